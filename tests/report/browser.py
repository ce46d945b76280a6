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


def _run(args: list[str], with_log: bool = False) -> str | tuple[str, str]:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return (done.stdout, done.stderr) if with_log else done.stdout


# After the load event, wait until every <audio> has its metadata (or failed), then write their state, the
# errors the page raised (scripts, and resources that failed to load, seen in the capture phase) into the DOM.
_MEDIA_MARK = "MEDIACHECK"
_MEDIA_PROBE = """<script>
var probeErrors = [];
window.addEventListener('error', function (e) {
  probeErrors.push(String(e.message || (e.target && (e.target.src || e.target.getAttribute('src')))));
}, true);
window.addEventListener('load', function () {
  var players = Array.prototype.slice.call(document.querySelectorAll('audio'));
  var left = players.length;
  function report() {
    var pre = document.createElement('pre');
    pre.textContent = 'MARK' + JSON.stringify({errors: probeErrors, audio: players.map(function (a) {
      return {src: a.getAttribute('src'), ready: a.readyState, duration: a.duration, error: a.error && a.error.code};
    })}) + 'MARK';
    document.body.appendChild(pre);
  }
  if (!left) { report(); return; }
  players.forEach(function (a) {
    function settled() { left -= 1; if (left === 0) { report(); } }
    if (a.readyState >= 1 || a.error) { settled(); return; }
    var once = false;
    ['loadedmetadata', 'error'].forEach(function (name) {
      a.addEventListener(name, function () { if (!once) { once = true; settled(); } });
    });
  });
});
</script>""".replace("MARK", _MEDIA_MARK)


def media_states(page: Path) -> dict:
    """{audio: [{src, ready, duration, error}], errors: [...], console: [...]} of ``page`` loaded in Chromium:
    every player's state once its metadata loaded, what failed to load, and what the page wrote to the console."""
    dom, log = _probed_dom(page, _MEDIA_PROBE, ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000"])
    found = re.search(f"{_MEDIA_MARK}(\\{{.*?\\}}){_MEDIA_MARK}", dom, re.DOTALL)
    assert found, f"the media probe did not finish; DOM ends {dom[-300:]!r}"
    state = json.loads(found.group(1))
    state["console"] = [line for line in log.splitlines() if ":CONSOLE" in line]
    return state


def _probed_dom(page: Path, script: str, args: list[str]) -> tuple[str, str]:
    """(DOM after load, Chromium's log) of a copy of ``page`` with ``script`` appended, written beside it so that
    relative paths resolve, then removed."""
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        return _run([*args, "--dump-dom", probe.resolve().as_uri()], with_log=True)
    finally:
        probe.unlink()


def image_states(page: Path) -> list[dict]:
    """[{src, complete, width, height}] of every <img> of ``page`` after it loaded in Chromium."""
    dom, _ = _probed_dom(page, _PROBE, ["--virtual-time-budget=10000"])
    found = re.search(f"{_MARK}(.*?){_MARK}", dom.replace(f"'{_MARK}'", ""), re.DOTALL)
    assert found, f"the probe script did not run; DOM starts {dom[:300]!r}"
    return json.loads(found.group(1))


def screenshot(page: Path, out: Path, width: int = 1500, height: int = 4000) -> Path:
    """A PNG of ``page`` as Chromium draws it."""
    _run([f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri()])
    assert out.exists(), "chromium wrote no screenshot"
    return out
