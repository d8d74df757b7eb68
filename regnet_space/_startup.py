"""The `regnet-space` command's entry point: a quiet Ctrl-C from its first moment, then the CLI.

Ctrl-C while the command starts up is one line and exit status 130, never a traceback. The
handler is installed by main(), before the command line's modules are imported, and only
there: importing the package (or this module) changes no signal handler. This module imports
only modules the interpreter has loaded before any package code runs (`_signal`, not
`signal`, whose import alone takes long enough for a Ctrl-C to land in it).
"""

from __future__ import annotations

import _signal
import os

_PROG = b"regnet-space"


def quiet_exit(signum: int, frame: object) -> None:
    # Nothing is written yet during start-up: leaving at once loses nothing.
    os.write(2, _PROG + b": interrupted\n")
    os._exit(130)


def main() -> int:
    """Run the command: the start-up Ctrl-C handler first, the cycle collector's thresholds,
    then `regnet_space.cli.main`, which handles Ctrl-C itself while the command runs."""
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, quiet_exit)
    import gc

    # A command holds up to millions of objects without cycles (a study's trials, records,
    # curves): at the interpreter's default thresholds the cycle collector walks them again
    # and again as they are built. Rarer collections, in the command's own process only.
    gc.set_threshold(100_000, 50, 100)
    from .cli import main as run

    return run(own_process=True)
