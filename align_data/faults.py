"""Named crash points for the kill-and-resume tests: the process kills itself with SIGKILL at one of them.

Set ``ALIGN_DATA_CRASH_AT=<point>[:<n>]`` to die the n-th time (default 1st) this process reaches ``point``;
with ``ALIGN_DATA_CRASH_MARKER=<file>`` only the first process to get there dies (it creates the file), so a
restarted worker goes on. Unset (always, outside tests) a crash point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

CRASH_AT = "ALIGN_DATA_CRASH_AT"
CRASH_MARKER = "ALIGN_DATA_CRASH_MARKER"
POINTS = ("stage:<name>", "targets:repair", "write:between_files", "write:before_rename", "write:after_rename",
          "write:before_upload", "write:after_upload", "driver:shard_done", "manifest")  # upload: URL builds

_hits: Counter = Counter()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``ALIGN_DATA_CRASH_AT`` names ``name`` and its count is reached."""
    wanted = os.environ.get(CRASH_AT)
    if not wanted:
        return
    point, _, nth = wanted.rpartition(":")
    if not nth.isdigit():  # no count given: the whole value names the point
        point, nth = wanted, "1"
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] != int(nth):
        return
    marker = os.environ.get(CRASH_MARKER)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
