"""The `regnet-space` command: one module per command group, a thin layer over the Python API.

Every user error is one line on stderr and exit status 2; nothing partial is written.
The cli side may import every other side, but only inside the handlers: registering a
command imports nothing heavier than argparse (no numpy, pydantic, YAML or torch), so
`--help`, `--version` and every command start fast.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from .._startup import quiet_exit
from ..core.errors import RegNetSpaceError
from ..core.text import SafeStream, clean
from . import analyze, build, interop, presets, sample, study, train
from .args import PROG, Parser


def make_parser() -> argparse.ArgumentParser:
    """The full argument parser (build, report, schema, sample, analyze, scale, fit)."""
    parser = Parser(
        prog=PROG,
        description="Turn RegNet design-space parameters into exact networks and numbers.",
        epilog="Examples:\n  regnet-space build specs/y040.yaml\n  regnet-space report specs/\n"
        "  regnet-space report specs/ --json --convention fvcore\n"
        "  regnet-space sample regnety -n 100 --flops 396M:404M -o s.jsonl\n"
        "  regnet-space list   # the shipped specs and spaces (y040, regnety, ...)\n"
        "  regnet-space analyze examples/zoo_errors.csv -o zoo_report\n\n"
        "Run `regnet-space COMMAND --help` for each command's options.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    # Each command group registers itself; none of these modules imports torch, numpy or
    # pydantic at import time (tests/test_ux_startup.py checks it).
    build.register(sub)
    sample.register(sub)
    analyze.register(sub)
    interop.register(sub)
    presets.register(sub)
    train.register(sub)
    study.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand, turning user errors into one line and exit status 2."""
    if signal.getsignal(signal.SIGINT) is quiet_exit:
        # From here on Ctrl-C raises KeyboardInterrupt, so that writers remove their temp files.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Names, labels and headers come from users' files: nothing printed may drive the terminal.
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(sys.stdout), SafeStream(sys.stderr)  # type: ignore[assignment]
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _run(argv: Sequence[str] | None) -> int:
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
        return int(args.func(args))
    except RegNetSpaceError as exc:
        print(f"{PROG}: {clean(str(exc))}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{PROG}: input nested too deeply", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: out of memory; the design is too large for this machine", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into a closed reader (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # A path the user gave has a name longer than the file system allows: wherever it was
        # first looked at, it is one line, as a missing file is.
        where = clean(str(exc.filename)) + ": " if exc.filename else ""
        print(f"{PROG}: {where}file name too long", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
