"""`regnet-space scale`: scale a spec's flops by the rules of "Fast and Accurate Model Scaling".

Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..infra.errors import RegNetSpaceError
from ..infra.text import clean
from .args import (
    COMMANDS,
    FORCE_HELP,
    INPUT_SIZE_HELP,
    JSON_HELP,
    SPEC_HELP,
    STDIO,
    check_output,
    input_size,
    percent,
    positive_float,
    unit_float,
    write_output,
)

if TYPE_CHECKING:
    from ..core.spec import Spec

DEFAULT_TOLERANCE = 10.0  # percent: how far `scale` may miss the asked flop factor

SCALE_DESCRIPTION = """\
Scale a spec's flops by S with the rules of "Fast and Accurate Model Scaling" (pycls's
scaler): depth x S**e_d, width x S**(e_w/2), resolution x S**(e_r/2) with e_d + e_w + e_r = 1,
then re-quantize (depth to an integer, widths to multiples of 8 or q, group width to 1, 2, 4
or a multiple of 8, input size to a multiple of 4). A parametric spec stays parametric (d,
w0, wa and the group width scaled, wm kept); an explicit one is scaled stage by stage. When
rounding misses the flop factor by more than 2 %, nearby widths (+-15 %) and depths (+-1)
are tried (--no-correct: pycls's rounding only). The new input size is the scaled spec's
`input_size` field, which report, build and export use. A result that misses the asked
factor by more than --tolerance (10 %) is reported on stderr and in --json and exits 1
without writing OUT, unless --allow-miss. Without -o (or with -o -) the scaled spec is the
output on stdout and the summary goes to stderr."""

SCALE_EPILOG = """\
examples:
  regnet-space scale specs/y040.yaml --flops-factor 4 -o y040x4.yaml
  regnet-space scale y040 --flops-factor 4 > y040x4.yaml
  regnet-space scale specs/x002.yaml --flops-factor 16 --weights dw -o x002x16.yaml
  regnet-space scale specs/y040.yaml --flops-factor 2 --alpha 1.0 --json

weights: d1_w8_g8_r1 (default: fast compound scaling, e_d = e_r = 0.1, e_w = 0.8, group width
like width), or letters such as d, w, dw, dwr (equal shares); --alpha A: e_w = A,
e_d = e_r = (1 - A) / 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `scale` to the command's subparsers."""
    s = subparsers.add_parser(
        "scale",
        help=COMMANDS["scale"],
        description=SCALE_DESCRIPTION,
        epilog=SCALE_EPILOG,
    )
    s.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    s.add_argument(
        "--flops-factor", type=positive_float, required=True, metavar="S", help="flop factor"
    )
    how = s.add_mutually_exclusive_group()
    how.add_argument("--weights", metavar="W", help="scaling weights (default d1_w8_g8_r1)")
    how.add_argument("--alpha", type=unit_float, metavar="A", help="width share e_w (0..1)")
    s.add_argument("--input-size", type=input_size, metavar="N", help="source's " + INPUT_SIZE_HELP)
    s.add_argument("--no-correct", action="store_true", help="pycls's rounding only")
    s.add_argument(
        "--tolerance",
        type=percent,
        default=DEFAULT_TOLERANCE,
        metavar="PCT",
        help=f"largest miss of the flop factor, in percent (default {DEFAULT_TOLERANCE:g})",
    )
    s.add_argument(
        "--allow-miss",
        action="store_true",
        help="write the scaled spec and exit 0 even when it misses the tolerance",
    )
    s.add_argument(
        "-o", "--output", metavar="OUT", help="write the scaled spec (YAML); - for stdout"
    )
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=run_scale)


def _scale_problems(scaled: Any, tolerance: float) -> list[str]:
    """What a user must know about a scaled design: a missed target, a lost stage, a size."""
    from ..core.generator import make_plan
    from ..core.limits import MAX_BUILD_PARAMS

    problems = []
    if abs(scaled.miss) * 100 > tolerance:
        problems.append(
            f"missed the flop factor: asked x{scaled.asked:g}, achieved x{scaled.achieved:.3g} "
            f"({100 * scaled.miss:+.1f} %, tolerance {tolerance:g} %)"
        )
    before, after = make_plan(scaled.source, scaled.input_size_before), make_plan(scaled.spec)
    if before.num_stages != after.num_stages:
        problems.append(f"stages: {before.num_stages} -> {after.num_stages}")
    if scaled.params > MAX_BUILD_PARAMS:
        problems.append(
            f"{scaled.params:,} parameters: over the build limit of {MAX_BUILD_PARAMS:,} "
            "(build and export need --allow-large)"
        )
    return problems


def run_scale(args: argparse.Namespace) -> int:
    """Scale a spec and write (or show) the new one; exit 1 on a miss beyond the tolerance."""
    from ..core.reader import load_spec
    from ..space.scaling import scale_spec, scaled_spec_text

    spec = load_spec(args.spec)
    to_stdout = args.output is None or args.output == STDIO
    if args.output == STDIO and args.json:
        raise RegNetSpaceError("-o - and --json both write stdout; give -o FILE with --json")
    check_output(args.output, args.force)
    scaled = scale_spec(
        spec,
        args.flops_factor,
        weights=args.weights,
        alpha=args.alpha,
        input_size=args.input_size,
        correct=not args.no_correct,
    )
    problems = _scale_problems(scaled, args.tolerance)
    missed = abs(scaled.miss) * 100 > args.tolerance
    write = not missed or args.allow_miss
    for problem in problems:
        sys.stderr.write(f"scale: {problem}\n")
    if missed and not args.allow_miss:
        sys.stderr.write("scale: nothing written (--allow-miss keeps such a result)\n")
    text = scaled_spec_text(scaled)
    written = None
    if write and not (args.output is None and args.json):
        written = write_output(args.output or STDIO, text, args.force)
    status = 1 if missed and not args.allow_miss else 0
    if args.json:
        out = scaled.as_dict() | {"output": written, "tolerance_percent": args.tolerance}
        out |= {"miss_percent": 100 * scaled.miss, "on_target": not missed}
        out |= {"problems": problems}
        sys.stdout.write(json.dumps(out) + "\n")
        return status
    sys.stderr.write(_scale_text(scaled, spec, written) if to_stdout else "")
    if not to_stdout:
        sys.stdout.write(_scale_text(scaled, spec, written))
    return status


def _scale_text(scaled: Any, spec: Spec, written: str | None) -> str:
    from ..core.spec import ParametricSpec
    from .render import render_table

    f = scaled.factors
    rows = [
        _spec_row("before", spec, scaled.input_size_before),
        _spec_row("after", scaled.spec, scaled.input_size),
    ]
    headers = ["", "depths", "widths", "group widths", "input", "GF", "M params", "M acts"]
    lines = [
        clean(f"{spec.name} -> {scaled.spec.name}  (weights {scaled.weights})"),
        f"multipliers: depth x{f.depth:.3f}, width x{f.width:.3f}, group width "
        f"x{f.group_width:.3f}, resolution x{f.resolution:.3f}",
    ]
    for label, s in (("before", spec), ("after", scaled.spec)):
        if isinstance(s, ParametricSpec):
            lines.append(
                f"{label:>6}: d={s.depth} w0={s.w0} wa={s.wa:g} wm={s.wm:g} g={s.group_width}"
            )
    lines += [
        "",
        render_table(headers, rows, markdown=False).rstrip(),
        "",
        f"flop factor: asked x{scaled.asked:g}, achieved x{scaled.achieved:.3f} "
        f"({100 * scaled.miss:+.1f} %)",
        f"input size: {scaled.input_size} (the scaled spec's input_size field)",
    ]
    if written is not None and written != "stdout":
        lines.append(clean(f"wrote {written}"))
    return "\n".join(lines) + "\n"


def _spec_row(label: str, spec: Spec, size: int) -> list[str]:
    from ..core.complexity import count
    from ..core.generator import make_plan

    p = make_plan(spec, size)
    c = count(p)

    def join(v: Sequence[int]) -> str:
        return ",".join(map(str, v))

    return [
        label,
        join(p.depths),
        join(p.widths),
        join(p.group_widths),
        str(size),
        f"{c.flops / 1e9:.3f}",
        f"{c.params / 1e6:.2f}",
        f"{c.acts / 1e6:.2f}",
    ]
