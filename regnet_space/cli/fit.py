"""`regnet-space fit`: fit d, w0, wa, wm to per-block widths (a spec's or a list).

Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..infra.text import clean
from .args import (
    COMMANDS,
    FORCE_HELP,
    JSON_HELP,
    SPEC_HELP,
    STDIO,
    check_output,
    int_in,
    positive_float,
    write_output,
)

if TYPE_CHECKING:
    from ..core.spec import Spec

FIT_DESCRIPTION = """\
Fit the RegNet parameters d, w0, wa, wm to per-block widths: those of SPEC (parametric or
explicit; its group width, bottleneck multiplier, q and rounding are used) or a --widths
list. d is the number of blocks; w0, wa, wm minimize the paper's fitting error e_fit = mean
over blocks of |log(w_fit / w)|, where w_fit are the widths the quantized linear rule and
the block-compatibility rule generate. e_fit = 0 means the parameters regenerate every
width. The fitted parametric spec (the source's input_size kept) is written to -o, or
printed on stdout with the summary on stderr."""

FIT_EPILOG = """\
examples:
  regnet-space fit specs/y040.yaml
  regnet-space fit --widths 24,56,152x4,368x7 -o fitted.yaml
  regnet-space fit --widths 256x3,512x4,1024x6,2048x3 --bottleneck-multiplier 0.25 \\
      --group-width 64 --json"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fit` to the command's subparsers."""
    f = subparsers.add_parser(
        "fit",
        help=COMMANDS["fit"],
        description=FIT_DESCRIPTION,
        epilog=FIT_EPILOG,
    )
    f.add_argument("spec", nargs="?", metavar="SPEC", help=SPEC_HELP)
    f.add_argument("--widths", metavar="LIST", help="per-block widths: 24,56,152x4,368x7")
    f.add_argument("--group-width", type=int_in(1, 1 << 20), metavar="G", help="default: q")
    f.add_argument("--bottleneck-multiplier", type=positive_float, metavar="BM", help="default: 1")
    f.add_argument("--q", type=int_in(1, 4096), metavar="Q", help="width quantum (default 8)")
    f.add_argument("--rounding", choices=("pycls", "torchvision"), help="default: pycls")
    f.add_argument("--block", choices=("x", "y"), default="x", help="block of --widths (x)")
    f.add_argument("--name", default="fitted", help="name of the spec fitted to --widths")
    f.add_argument(
        "-o", "--output", metavar="OUT", help="write the fitted spec (YAML); - for stdout"
    )
    f.add_argument("--force", action="store_true", help=FORCE_HELP)
    f.add_argument("--json", action="store_true", help=JSON_HELP)
    f.set_defaults(func=run_fit)


@dataclass(frozen=True)
class _Source:
    """What the fit starts from: the widths, the rules their spec used, its other fields."""

    widths: list[int]
    q: int
    group_width: int | None
    bottleneck_multiplier: float | None
    rounding: str
    base: dict[str, Any]  # the fitted spec's fields besides the fitted ones
    name: str  # for the summary and the spec's comment
    notes: list[str]


def _source(args: argparse.Namespace) -> _Source:
    """The widths of SPEC (and its rules and fields), or those of --widths."""
    from ..core.generator import make_plan
    from ..core.reader import load_spec
    from ..core.spec import ParametricSpec
    from ..space.fitting import parse_widths, shared_block_options

    if args.spec is None:
        widths = list(parse_widths(args.widths))
        base = {"name": args.name, "block": args.block}
        return _Source(widths, 8, None, 1.0, "pycls", base, "--widths", [])
    spec = load_spec(args.spec)
    widths = [s.width for s in make_plan(spec).stages for _ in range(s.depth)]
    notes: list[str] = []
    if isinstance(spec, ParametricSpec):
        q, g, bm, rounding = spec.q, spec.group_width, spec.bottleneck_multiplier, spec.rounding
    else:
        q, rounding = 8, "pycls"
        g, bm = shared_block_options(spec)
        if g is None:
            notes.append("stages differ in bottleneck multiplier: widths fitted as they are")
        if any(stride != 2 for stride in spec.strides()[1:]):
            notes.append("the spec has stride-1 stages; a parametric spec strides every stage")
    return _Source(
        widths, q, g, bm, rounding, _base_fields(spec), f"{spec.name} ({args.spec})", notes
    )


def run_fit(args: argparse.Namespace) -> int:
    """Fit d, w0, wa, wm and print (and write) the result."""
    from ..core.spec import dump_spec, spec_from_dict
    from ..infra.dumping import yaml_comment
    from ..space.fitting import FitError, fit_widths

    if (args.spec is None) == (args.widths is None):
        raise FitError("give a SPEC or --widths (one of them)")
    to_stdout = args.output is None or args.output == STDIO
    if args.output == STDIO and args.json:
        raise FitError("-o - and --json both write stdout; give -o FILE with --json")
    check_output(args.output, args.force)
    src = _source(args)
    fit = fit_widths(
        src.widths,
        q=args.q if args.q is not None else src.q,
        group_width=args.group_width if args.group_width is not None else src.group_width,
        bottleneck_multiplier=(
            args.bottleneck_multiplier
            if args.bottleneck_multiplier is not None
            else src.bottleneck_multiplier
        ),
        rounding=args.rounding or src.rounding,
    )
    fields = {
        "depth": fit.depth,
        "w0": fit.w0,
        "wa": fit.wa,
        "wm": fit.wm,
        "group_width": fit.group_width,
        "bottleneck_multiplier": fit.bottleneck_multiplier,
        "q": fit.q,
        "rounding": fit.rounding,
    }
    fitted_spec = spec_from_dict({**src.base, **fields}, "fitted spec")
    header = yaml_comment(
        f"fitted by regnet-space fit to {src.name}: e_fit = {fit.error:.6g}"
        f"{' (exact)' if fit.exact else ''}"
    )
    written = None
    if args.output is not None or not args.json:
        written = write_output(args.output or STDIO, header + dump_spec(fitted_spec), args.force)
    if args.json:
        out = fit.as_dict() | {"notes": src.notes, "output": written}
        out["spec"] = fitted_spec.model_dump(mode="json")
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    summary = _fit_text(fit, src.name, src.notes, None if to_stdout else written)
    (sys.stderr if to_stdout else sys.stdout).write(summary)
    return 0


def _base_fields(spec: Spec) -> dict[str, Any]:
    keep = {"name", "block", "se_ratio", "stem_width", "num_channels", "num_classes"}
    keep |= {"activation", "downsample_in_first_stage", "input_size", "stem"}
    return spec.model_dump(mode="json", include=keep)


def _runs(widths: Sequence[int]) -> str:
    out: list[list[int]] = []
    for w in widths:
        if out and out[-1][0] == w:
            out[-1][1] += 1
        else:
            out.append([w, 1])
    return ", ".join(f"{w}x{n}" if n > 1 else str(w) for w, n in out)


def _fit_text(fit: Any, source: str, notes: list[str], output: str | None) -> str:
    bm = f"{fit.bottleneck_multiplier:g}"
    lines = [
        clean(f"fit to {fit.depth} per-block widths of {source}"),
        f"(group width {fit.group_width}, bottleneck multiplier {bm}, q {fit.q}, "
        f"{fit.rounding} rounding)",
        "",
        f"  d = {fit.depth}   w0 = {fit.w0}   wa = {fit.wa:g}   wm = {fit.wm:g}",
        "",
        f"e_fit = {fit.error:.6g} (mean |log(w_fit / w)| over blocks)"
        + (": exact, every width regenerated" if fit.exact else ""),
        f"  given:  {_runs(fit.target)}",
        f"  fitted: {_runs(fit.fitted)}",
    ]
    lines += [f"note: {n}" for n in notes]
    if output is not None:
        lines.append(clean(f"wrote {output}"))
    return "\n".join(lines) + "\n"
