"""Helpers for tests that signal the command's processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from regnet_space.infra.atomic import TMP_PREFIX

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
COMMAND = (sys.executable, "-m", "regnet_space")


def start_command(*argv: str, cwd: Path, head: tuple[str, ...] = COMMAND) -> subprocess.Popen[str]:
    """Start the command (or `head`, another way to run it) as a real process, once it runs."""
    proc = subprocess.Popen(
        [*head, *argv],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    return execed(proc)


def run_command(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command as a real process to its end."""
    return subprocess.run(
        [*COMMAND, *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120
    )


def temps(folder: Path) -> list[Path]:
    """The command's temp files anywhere under a folder."""
    return [p for p in folder.rglob("*") if p.name.startswith(TMP_PREFIX)]


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
