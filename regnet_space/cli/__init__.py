"""The `regnet-space` command: one module per command, a thin layer over the Python API.

Every user error is one line on stderr and exit status 2; nothing partial is written.
The cli side may import every other side, but only inside the handlers: registering a
command imports nothing heavier than argparse (no numpy, pydantic, YAML or torch), so
`--help`, `--version` and every command start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from .. import __version__
from ..infra.errors import RegNetSpaceError
from ..infra.text import SafeStream, clean
from .args import COMMANDS, PROG, Parser

# The module that registers and runs each command, where it is not the command's name.
_MODULES = {"list": "presets"}


def make_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command, in the order --help lists them; those not in `full`
    (default: all) only by name and help, without their module or options."""
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

    # Each command registers itself; none of these modules imports torch, numpy or pydantic
    # at import time (tests/cli/test_startup.py checks it). A command that does not run is
    # only listed: importing every module and adding every option is most of --help's time.
    for name, help_text in COMMANDS.items():
        if full is None or name in full:
            module = importlib.import_module(f".{_MODULES.get(name, name)}", __name__)
            module.register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _command_of(argv: Sequence[str]) -> set[str]:
    """The command an argument list runs (its first word: the command line has no option
    that takes a value before it), or none."""
    words = [a for a in argv if not a.startswith("-")]
    return {words[0]} if words and words[0] in COMMANDS else set()


class _Interrupts:
    """Ctrl-C while a command runs: KeyboardInterrupt where it lands, and remembered, so that
    one swallowed where it landed (a weakref callback, a __del__, a library's exception
    wrapper) still ends the command as interrupted."""

    def __init__(self, own_process: bool) -> None:
        self.caught = False
        self.armed = True  # False once the command has returned: then only remembered
        self.own_process = own_process

    def handler(self, signum: int, frame: object) -> None:
        self.caught = True
        if self.armed:
            raise KeyboardInterrupt

    def on_unraisable(self, hook: Callable[[Any], object]) -> Callable[[Any], None]:
        """sys.unraisablehook: an interrupt swallowed where it landed is no traceback; the
        command ends as interrupted when it returns (raising it again from here, inside the
        callback, would only be swallowed again)."""

        def unraisable(info: Any) -> None:
            if not issubclass(info.exc_type, KeyboardInterrupt):
                hook(info)

        return unraisable

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This handler for the command's run; the previous one after it, except that the
        command's own process ignores Ctrl-C from then on: it only exits, and Python's
        shutdown would otherwise die of the signal without a word, its status lost."""
        try:
            previous = signal.signal(signal.SIGINT, self.handler)
        except ValueError:  # not the main thread: signals are not ours to handle
            yield
            return
        hook = sys.unraisablehook
        sys.unraisablehook = self.on_unraisable(hook)
        try:
            yield
        finally:
            sys.unraisablehook = hook
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.own_process else previous)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run a subcommand, turning user errors into one line and exit status 2.

    Ctrl-C is one line, `regnet-space: interrupted`, and exit status 130, whenever it comes
    (a commit under way finishes or rolls back first). `own_process`: this process is the
    command (regnet_space._startup), so Ctrl-C is ignored once the command has returned.
    """
    interrupts = _Interrupts(own_process)
    with interrupts.installed():
        # Names, labels and headers come from users' files: nothing printed may drive the
        # terminal.
        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = SafeStream(sys.stdout), SafeStream(sys.stderr)  # type: ignore[assignment]
        try:
            try:
                status = _run(argv)
            finally:
                interrupts.armed = False
        except BaseException as exc:
            if not (interrupts.caught or isinstance(exc, KeyboardInterrupt)):
                raise
            status = _interrupted()
        else:
            if interrupts.caught:
                status = _interrupted()
        finally:
            sys.stdout, sys.stderr = streams
    return status


def _interrupted() -> int:
    with contextlib.suppress(OSError):
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
    return 130


def _run(argv: Sequence[str] | None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = make_parser(full=_command_of(argv))
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
