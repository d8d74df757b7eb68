"""Helpers for tests that signal the command's processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path


def execed(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Wait until the child runs its own program: a signal that comes between fork and exec
    meets the test process's handler, copied into the child, and is lost at exec (a shell's
    child resets its handlers first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if b"regnet" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                break
        except OSError:  # ended meanwhile
            break
        time.sleep(0.0002)
    return proc


def default_sigint() -> None:
    """In the child before exec: Ctrl-C's default disposition, as a shell gives its foreground
    commands (tests run as a background job inherit SIGINT ignored, and so would the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
