"""`regnet-space sample`: draw designs from a design-space file into a .jsonl or .csv file.

Never imports torch; the sampling modules are imported when the command runs, so that
registering the command costs the other commands nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..core.errors import OutputError, RegNetSpaceError
from ..core.io import atomic_write_text, atomic_write_texts, check_target
from ..core.spec import dump_spec
from .args import input_size

if TYPE_CHECKING:
    from ..space.sampling import DesignRecord, SampleError, SampleProgress, SampleResult
    from ..space.space import Bounds

SUFFIXES = (".jsonl", ".csv")

DESCRIPTION = """\
Draw N distinct designs from a design-space file, keep those that meet the constraints
(the space file's, overridden by the options) and write one record per design: a sample id,
the design's spec fields, its stage plan (widths, depths, group_widths) and its flops, params
and acts (paper convention, analytic). Plain rejection sampling: accepted designs follow the
space's distribution restricted to the constraints. The same space, seed and options give
the same bytes on any machine.

Ranges are LO:HI with K/M/G suffixes (powers of 1000); either side may be left open (:5M,
396M:). A single number N means N:N; a bare ":" removes the space file's constraint."""

EPILOG = """\
examples:
  regnet-space sample specs/spaces/regnety.yaml --n 100 --flops 396M:404M --seed 0 -o s.jsonl
  regnet-space sample specs/spaces/regnetx.yaml --n 1000 --flops 1.58G:1.62G -o x16.csv
  regnet-space sample specs/spaces/anynetx_e.yaml --n 500 --flops 360M:400M -o e.jsonl \\
      --specs-dir e_specs
  regnet-space sample specs/spaces/regnety.yaml --n 20 --params :5M --stages 4:5 -o y.jsonl

shipped spaces (specs/spaces/): regnetx, regnety (pycls's ranges), anynetx_a ... anynetx_e
(the paper's AnyNetX spaces)."""


def _count(text: str) -> int:
    from ..space.space import parse_count

    try:
        value = parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value.denominator != 1 or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(value)


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _bounds(text: str) -> Bounds:
    from ..space.space import parse_bounds

    try:
        parsed = parse_bounds(text if ":" in text else [text, text])
    except RegNetSpaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if parsed is None:  # parse_bounds gives None only for "no bound at all"
        raise argparse.ArgumentTypeError(f"expected a range LO:HI, got {text!r}")
    return parsed


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sample` subcommand to a CLI's subparsers."""
    p = subparsers.add_parser(
        "sample",
        help="draw designs from a design space under complexity constraints",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("space", metavar="SPACE", help="design-space file (YAML, specs/spaces/)")
    p.add_argument("--n", type=_count, required=True, metavar="N", help="designs to draw")
    p.add_argument("--seed", type=_seed, default=0, metavar="S", help="random seed (default 0)")
    for metric, what, example in (
        ("flops", "flops", "396M:404M"),
        ("params", "parameters", ":5M"),
        ("acts", "activations", ":6.5M"),
    ):
        p.add_argument(
            f"--{metric}",
            type=_bounds,
            metavar="LO:HI",
            help=f"range of {what} (paper convention), e.g. {example}",
        )
    p.add_argument("--stages", type=_bounds, metavar="LO:HI", help="range of the stage count")
    p.add_argument(
        "--input-size",
        type=input_size,
        metavar="N",
        help="square input side for the counts (default: the space's, 224)",
    )
    p.add_argument(
        "--max-tries",
        type=_count,
        metavar="M",
        help="give up after M draws (default: max(10M, 50K x N))",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file: .jsonl (one JSON object per line) or .csv",
    )
    p.add_argument(
        "--specs-dir",
        metavar="DIR",
        help="also write each design as a spec file in DIR (created if missing)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=run)


class _Progress:
    """A `\\r` counter on stderr, at most 10 updates a second; on a non-TTY, a line every 5 s."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.last = 0.0
        self.shown = False

    def __call__(self, p: SampleProgress) -> None:
        if not self.enabled or p.elapsed - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = p.elapsed
        line = (
            f"sample: {p.accepted:,}/{p.requested:,} designs, {p.tries:,} tries "
            f"({_percent(p.accepted, p.tries)}), {p.elapsed:.1f} s"
        )
        self.stream.write(f"\r{line}\033[K" if self.tty else line + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.shown = False


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "n/a"
    value = 100 * part / whole
    return f"{value:.3g} %" if value >= 0.001 or value == 0 else f"{value:.1e} %"


def _human(x: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if x >= scale:
            return f"{x / scale:.4g}{unit}"
    return str(x)


def _describe(record: DesignRecord) -> str:
    """One line per design: counts, then its spec fields and stage widths."""
    skip = {"name", "block", "se_ratio", "stem_width", "q", "rounding", "stages"}
    parts = [f"{k}={v}" for k, v in record.spec.items() if k not in skip]
    parts.append("widths " + ",".join(map(str, record.widths)))
    parts.append("depths " + ",".join(map(str, record.depths)))
    counts = f"flops {_human(record.flops)}, params {_human(record.params)}"
    return f"  {counts}, acts {_human(record.acts)}: {' '.join(parts)}"


def _report_failure(err: SampleError, stream: IO[str]) -> None:
    result = err.result
    c = result.constraints
    wanted = ", ".join(
        f"{m} {getattr(c, m)}" for m in ("flops", "params", "acts", "stages") if getattr(c, m)
    )
    stream.write(
        f"sample: {result.accepted} of {result.requested} designs found in {result.tries:,} "
        f"tries ({wanted or 'no constraints'}).\n"
    )
    stream.write(f"rejected: {_reasons(result)}\n")
    if result.closest:
        stream.write("closest designs seen (rejected for their complexity only):\n")
        for rec in result.closest:
            stream.write(_describe(rec) + "\n")
    else:
        stream.write("no design met the structural rules, so none is close to the bounds.\n")
    stream.flush()


def _reasons(result: SampleResult) -> str:
    from ..space.sampling import REASONS

    order = (*REASONS, "duplicate")
    parts = [f"{k} {result.rejected[k]:,}" for k in order if result.rejected.get(k)]
    return ", ".join(parts) or "none"


def _targets(args: argparse.Namespace, space_name: str) -> tuple[Path, Path | None, list[Path]]:
    """Check every output path before sampling, so that a long run never ends in a refusal."""
    from ..space.sampling import spec_file_names

    out = Path(args.output)
    if out.suffix not in SUFFIXES:
        raise OutputError(f"{out}: the output must end in .jsonl or .csv")
    check_target(out, args.force)
    if args.specs_dir is None:
        return out, None, []
    folder = Path(args.specs_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a directory")
    if not folder.parent.is_dir():
        raise OutputError(f"{folder.parent}: no such directory")
    files = [folder / name for name in spec_file_names(space_name, args.n)]
    if folder.is_dir():
        for f in files:
            check_target(f, args.force)
    return out, folder, files


def run(args: argparse.Namespace) -> int:
    """Sample, then write the records (and spec files); 0 on success."""
    from ..space.sampling import SampleError, records_to_csv, records_to_jsonl, sample
    from ..space.space import load_space

    space = load_space(args.space)
    out, folder, spec_files = _targets(args, space.space)
    progress = _Progress(sys.stderr, not args.quiet)
    t0 = time.perf_counter()
    try:
        result = sample(
            space,
            args.n,
            seed=args.seed,
            flops=args.flops,
            params=args.params,
            acts=args.acts,
            stages=args.stages,
            input_size=args.input_size,
            max_tries=args.max_tries,
            progress=progress,
        )
    except SampleError as err:
        progress.done()
        _report_failure(err, sys.stderr)
        raise
    finally:
        progress.done()
    elapsed = time.perf_counter() - t0
    if folder is not None:
        folder.mkdir(exist_ok=True)
        texts = [dump_spec(rec.to_spec()) for rec in result.records]
        atomic_write_texts(list(zip(spec_files, texts, strict=True)), args.force)
    render = records_to_jsonl if out.suffix == ".jsonl" else records_to_csv
    atomic_write_text(out, render(result.records), args.force)
    if not args.quiet:
        sys.stderr.write(
            f"sample: {result.accepted:,} designs from {result.space} in {result.tries:,} tries "
            f"(acceptance {_percent(result.accepted, result.tries)}), {elapsed:.2f} s -> {out}"
            + (f" and {folder}/" if folder is not None else "")
            + "\n"
        )
    if args.json:
        sys.stdout.write(json.dumps(_summary(result, out, folder, elapsed)) + "\n")
    return 0


def _summary(
    result: SampleResult, out: Path, folder: Path | None, elapsed: float
) -> dict[str, Any]:
    c = result.constraints
    return {
        "space": result.space,
        "seed": result.seed,
        "n": result.requested,
        "input_size": result.input_size,
        "constraints": {
            m: (None if getattr(c, m) is None else str(getattr(c, m)))
            for m in ("flops", "params", "acts", "stages")
        }
        | {"allow_skipped_exponents": c.allow_skipped_exponents},
        "accepted": result.accepted,
        "tries": result.tries,
        "acceptance_rate": result.acceptance_rate,
        "rejected": dict(result.rejected),
        "output": str(out),
        "specs_dir": None if folder is None else str(folder),
        "seconds": round(elapsed, 3),
        "draws_per_second": math.floor(result.tries / elapsed) if elapsed > 0 else None,
    }
