"""`regnet-space report`: counts of specs or folders of specs, without building models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.limits import CONVENTIONS, FORMATS
from ..infra.text import clean
from .args import COMMANDS, COUNTER_HELP, COUNTERS, INPUT_SIZE_HELP, input_size
from .progress import Progress

if TYPE_CHECKING:
    from .render import SpecSummary

CONVENTION_HELP = (
    "counting convention: paper (pycls; 1 flop = 1 multiply-add, bias adds counted, BN/pool "
    "free), fvcore (fvcore's default FlopCountAnalysis in eval mode: no bias, BN 2/element, "
    "pooling 1/element) or torchvision (multiply-adds only)"
)


def _summaries(args: argparse.Namespace) -> tuple[list[SpecSummary], list[str], list[str]]:
    """Every spec that loads, a line per skipped space file, a line per file that fails."""
    from ..core.hf import CONFIG_FILE
    from ..core.reader import read_spec
    from ..infra.errors import RegNetSpaceError
    from .render import find_spec_files, summarize

    if args.specs == ["-"]:
        loaded = read_spec("-")
        return [summarize(loaded.spec, loaded.source, args.input_size, args.convention)], [], []
    good, skipped, bad = [], [], []
    for item in args.specs:
        p = Path(item)
        if p.is_dir() and not (p / CONFIG_FILE).is_file():  # a folder of specs
            files = find_spec_files([p], recursive=args.recursive)
            skipped += [
                f"skipped {f}: a design-space file, not a spec (see `sample`)"
                for f in files.skipped
            ]
            bad += files.missing
            sources = [str(f) for f in files.specs]
        else:  # a file of any spec form, a Hugging Face snapshot folder or a shipped name
            sources = [item]
        for source in sources:
            try:
                loaded = read_spec(source)
                good.append(summarize(loaded.spec, loaded.source, args.input_size, args.convention))
            except RegNetSpaceError as exc:
                message = str(exc)
                bad.append(message if message.startswith(source) else f"{source}: {message}")
    return good, skipped, bad


def cmd_report(args: argparse.Namespace) -> int:
    """One row per spec, analytic counts (and FlopCounterMode's with --counter torch).

    Every spec that loads is reported first, then one line on stderr for each that does not;
    the exit status is 2 when any did not.
    """
    from .render import render_report

    fmt = "json" if args.json else args.format
    summaries, skipped, bad = _summaries(args)
    status = 2 if bad else 0
    checks = []
    if args.counter == "torch" and summaries:
        from ..nn.counters import torch_check

        progress = Progress("report --counter torch", len(summaries))
        try:
            for i, s in enumerate(summaries):
                checks.append(torch_check(s.plan))
                progress.update(i + 1)
        finally:
            progress.done()
    if summaries and fmt == "json" and checks:
        rows = [
            s.as_dict() | {"torch_counter": c.as_dict()}
            for s, c in zip(summaries, checks, strict=True)
        ]
        import json  # only for --json: a table's start-up does without it

        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif summaries or fmt in ("json", "csv"):
        sys.stdout.write(render_report(summaries, fmt))
        if checks and fmt != "csv":
            agree = sum(c.ok for c in checks)
            sys.stdout.write(
                f"FlopCounterMode (meta device): {agree}/{len(checks)} agree with "
                "2 x the torchvision convention\n"
            )
            for s, c in zip(summaries, checks, strict=True):
                if not c.ok:
                    sys.stdout.write(clean(f"  {s.source}: {c.summary_line()}") + "\n")
    sys.stdout.flush()
    for line in skipped:
        sys.stderr.write(clean(line) + "\n")
    for message in bad:
        sys.stderr.write(f"regnet-space: {clean(message)}\n")
    if status == 0 and not all(c.ok for c in checks):
        status = 1
    return status


def register(sub: Any) -> None:
    """Add `report` to the command's subparsers."""
    r = sub.add_parser(
        "report",
        help=COMMANDS["report"],
        description="Flops, params and activations of each spec (folders: their *.yaml files), "
        "counted analytically. Every spec that loads is reported, then one line on stderr for "
        "each file that does not (exit status 2 if any); design-space files in a folder are "
        "named as skipped.",
    )
    r.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC_OR_DIR",
        help="spec files, folders of them, shipped spec names (y040), or - for stdin",
    )
    r.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )
    r.add_argument("--json", action="store_true", help="the same as --format json")
    r.add_argument(
        "-r", "--recursive", action="store_true", help="also read the folders inside folders"
    )
    r.add_argument("--input-size", type=input_size, metavar="N", help=INPUT_SIZE_HELP)
    r.add_argument("--convention", choices=CONVENTIONS, default="paper", help=CONVENTION_HELP)
    r.add_argument("--counter", choices=COUNTERS, default="analytic", help=COUNTER_HELP)
    r.set_defaults(func=cmd_report)
