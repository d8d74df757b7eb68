"""Ctrl-C while the command starts up: one line and exit status 130, never a traceback.

Imports only modules the interpreter has loaded before any package code runs (`_signal`, not
`signal`, whose import alone takes long enough for a Ctrl-C to land in it).
"""

from __future__ import annotations

import _signal
import os
import sys

_PROG = b"regnet-space"


def quiet_exit(signum: int, frame: object) -> None:
    # Nothing is written yet during start-up: leaving at once loses nothing.
    os.write(2, _PROG + b": interrupted\n")
    os._exit(130)


def _is_command() -> bool:
    """Whether this process is the `regnet-space` command (not a program importing the library)."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    if argv0 in ("regnet-space", "regnet-space.exe"):
        return True
    orig = getattr(sys, "orig_argv", [])
    return "-m" in orig and orig[orig.index("-m") + 1 : orig.index("-m") + 2] == ["regnet_space"]


def quiet_interrupt_at_startup() -> None:
    """Install the quiet SIGINT handler when running as the command; main() takes over later."""
    if _is_command() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, quiet_exit)


quiet_interrupt_at_startup()
