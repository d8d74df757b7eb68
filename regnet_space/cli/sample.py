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

from ..infra.errors import OutputError, RegNetSpaceError
from ..infra.text import clean
from .args import COMMANDS, FORCE_HELP, JSON_HELP, STDIO, input_size, int_in, write_output
from .progress import Progress

if TYPE_CHECKING:
    from ..infra.outputs import OutputSet
    from ..space.records import DesignRecord, SampleProgress, SampleResult
    from ..space.sampling import SampleError
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
  regnet-space sample regnety -n 100 --flops 396M:404M --seed 0 -o s.jsonl
  regnet-space sample regnety -n 3 -o - | head -1
  regnet-space sample specs/spaces/regnetx.yaml --n 1000 --flops 1.58G:1.62G -o x16.csv
  regnet-space sample specs/spaces/anynetx_e.yaml --n 500 --flops 360M:400M -o e.jsonl \\
      --specs-dir e_specs
  regnet-space sample specs/spaces/regnety.yaml --n 20 --params :5M --stages 4:5 -o y.jsonl

shipped spaces (by name from any folder; `regnet-space list`): regnetx, regnety (pycls's
ranges), anynetx_a ... anynetx_e (the paper's AnyNetX spaces)."""


MAX_COUNT = 10**12


def _count(text: str) -> int:
    """A count of at least 1, K/M/G suffixes allowed (10K); the shared out-of-range message."""
    from ..space.space import parse_count

    try:
        value = parse_count(text)
    except ValueError:
        value = None
    if value is None or value.denominator != 1 or not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {MAX_COUNT:,}, got {text!r}"
        ) from None
    return int(value)


_seed = int_in(0, 2**63 - 1)


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
        help=COMMANDS["sample"],
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "space",
        metavar="SPACE",
        help="design-space file (YAML) or a shipped space's name (regnety; see `list`)",
    )
    p.add_argument(
        "-n", "--n", type=_count, required=True, metavar="N", help="designs to draw (10K ok)"
    )
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
        help="output file: .jsonl (one JSON object per line) or .csv; - for stdout",
    )
    p.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="record format (default: OUT's suffix; jsonl for -)",
    )
    p.add_argument(
        "--specs-dir",
        metavar="DIR",
        help="also write each design as a spec file in DIR (created if missing), its "
        "input_size included when not 224",
    )
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (a summary of the run)")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=run)


class _Progress:
    """Designs accepted so far, with an ETA, on a terminal only (quiet in pipes)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress("sample", enabled=enabled)

    def __call__(self, p: SampleProgress) -> None:
        self.bar.update(p.accepted, p.requested, note=f"designs ({p.tries:,} tries)")

    def done(self) -> None:
        self.bar.done()


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
    from ..space.evaluator import REASONS

    order = (*REASONS, "duplicate")
    parts = [f"{k} {result.rejected[k]:,}" for k in order if result.rejected.get(k)]
    return ", ".join(parts) or "none"


def _targets(
    args: argparse.Namespace, space_name: str
) -> tuple[OutputSet, Path, Path | None, list[str]]:
    """Check every output path before sampling, so that a long run never ends in a refusal.

    Also returns the spec file names of the --specs-dir folder (none without it).
    """
    from ..infra.outputs import OutputSet
    from ..space.output import spec_file_names
    from ..space.sampling import MAX_DESIGNS

    out = Path(args.output)
    if args.output == STDIO:
        if args.json:
            raise OutputError("-o - writes the designs to stdout; --json would mix into them")
    elif out.suffix not in SUFFIXES:
        raise OutputError(
            f"{clean(str(out))}: the output must end in .jsonl or .csv (or - for stdout)"
        )
    elif args.format is not None and out.suffix != f".{args.format}":
        raise OutputError(f"{clean(str(out))}: --format {args.format} writes a .{args.format} file")
    if args.n > MAX_DESIGNS:  # before building n file names
        raise OutputError(f"--n must be at most {MAX_DESIGNS:,}, got {args.n:,}")
    outputs = OutputSet(args.force)
    folder, names = None, []
    if args.specs_dir is not None:
        names = spec_file_names(space_name, args.n)
        folder = outputs.folder(args.specs_dir, names, shared=True)
    if args.output != STDIO:
        outputs.file(out)  # last: a records file means its spec folder is complete
    return outputs, out, folder, names


def run(args: argparse.Namespace) -> int:
    """Sample, then write the records (and spec files); 0 on success."""
    from ..core.presets import resolve
    from ..core.spec import dump_spec, spec_from_dict
    from ..space.output import records_to_csv, records_to_jsonl
    from ..space.sampling import SampleError, sample
    from ..space.space import load_space
    from .allocator import keep_freed_memory

    keep_freed_memory()
    space = load_space(resolve(args.space, "space") if args.space != STDIO else sys.stdin.read())
    # The names are those of result.space: sample() passes a loaded space through.
    outputs, out, folder, names = _targets(args, space.space)
    progress = _Progress(not args.quiet)
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
    fmt = args.format or ("csv" if out.suffix == ".csv" and args.output != STDIO else "jsonl")
    render = records_to_csv if fmt == "csv" else records_to_jsonl
    text = render(result.records)
    with outputs.staging() as staging:  # the spec folder and the records appear together
        if folder is not None:
            for name, rec in zip(names, result.records, strict=True):
                # The design was counted at the sample's input size: the spec file says so.
                fields = rec.to_dict_spec() | {"input_size": rec.input_size}
                staging.write_text(folder / name, dump_spec(spec_from_dict(fields, name)))
        if args.output != STDIO:
            staging.write_text(out, text)
    written = write_output(STDIO, text, args.force) if args.output == STDIO else str(out)
    if not args.quiet:
        sys.stderr.write(
            clean(
                f"sample: {result.accepted:,} designs from {result.space} in {result.tries:,} "
                f"tries (acceptance {_percent(result.accepted, result.tries)}), {elapsed:.2f} s "
                f"-> {written}" + (f" and {folder}/" if folder is not None else "")
            )
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
