"""Render a page in headless Chromium (Debian's ``chromium``): a screenshot, and the load state of every <img>."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# Flags this offline machine needs: without the background-networking ones Chromium's connections are refused.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
_MARK = "IMGCHECK"
# Appended to a copy of the page beside it (so relative image paths resolve): after the load event, write the
# state of every image into the DOM, which --dump-dom then prints.
_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images).map(function (i) {
    return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var pre = document.createElement('pre');
  pre.textContent = 'MARK' + JSON.stringify(imgs) + 'MARK';
  document.body.appendChild(pre);
});
</script>""".replace("MARK", _MARK)


def chromium() -> str:
    """The chromium binary; CI (where make installs it) fails without it, elsewhere the test is skipped."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make system-deps` installs it (Debian package chromium)")
        pytest.skip("chromium is not installed (`sudo apt-get install chromium fonts-liberation`)")
    return path


def _run(args: list[str]) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def image_states(page: Path) -> list[dict]:
    """[{src, complete, width, height}] of every <img> of ``page`` after it loaded in Chromium."""
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        dom = _run(["--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()])
    finally:
        probe.unlink()
    found = re.search(f"{_MARK}(.*?){_MARK}", dom.replace(f"'{_MARK}'", ""), re.DOTALL)
    assert found, f"the probe script did not run; DOM starts {dom[:300]!r}"
    return json.loads(found.group(1))


def screenshot(page: Path, out: Path, width: int = 1500, height: int = 4000) -> Path:
    """A PNG of ``page`` as Chromium draws it."""
    _run([f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri()])
    assert out.exists(), "chromium wrote no screenshot"
    return out
