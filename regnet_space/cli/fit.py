"""`regnet-space fit`: fit d, w0, wa, wm to per-block widths (a spec's or a list).

Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.text import clean
from .args import (
    FORCE_HELP,
    JSON_HELP,
    SPEC_HELP,
    STDIO,
    check_output,
    int_in,
    load_spec_argument,
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
        help="fit d, w0, wa, wm to per-block widths (a spec's or a list)",
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


def run_fit(args: argparse.Namespace) -> int:
    """Fit d, w0, wa, wm and print (and write) the result."""
    from ..core.generator import plan
    from ..core.loading import yaml_comment
    from ..core.spec import ParametricSpec, dump_spec, spec_from_dict
    from ..space.fitting import FitError, fit_widths, parse_widths, shared_block_options

    if (args.spec is None) == (args.widths is None):
        raise FitError("give a SPEC or --widths (one of them)")
    to_stdout = args.output is None or args.output == STDIO
    if args.output == STDIO and args.json:
        raise FitError("-o - and --json both write stdout; give -o FILE with --json")
    check_output(args.output, args.force)
    notes: list[str] = []
    base: dict[str, Any]
    if args.spec is not None:
        spec, _ = load_spec_argument(args.spec)
        widths = [s.width for s in plan(spec).stages for _ in range(s.depth)]
        if isinstance(spec, ParametricSpec):
            q, g, bm, rounding = spec.q, spec.group_width, spec.bottleneck_multiplier, spec.rounding
        else:
            q, rounding = 8, "pycls"
            g, bm = shared_block_options(spec)
            if g is None:
                notes.append("stages differ in bottleneck multiplier: widths fitted as they are")
            if any(stride != 2 for stride in spec.strides()[1:]):
                notes.append("the spec has stride-1 stages; a parametric spec strides every stage")
        base = _base_fields(spec)
        source = f"{spec.name} ({args.spec})"
    else:
        widths = list(parse_widths(args.widths))
        q, g, bm, rounding = 8, None, 1.0, "pycls"
        base = {"name": args.name, "block": args.block}
        source = "--widths"
    q = args.q if args.q is not None else q
    g = args.group_width if args.group_width is not None else g
    bm = args.bottleneck_multiplier if args.bottleneck_multiplier is not None else bm
    rounding = args.rounding or rounding
    fit = fit_widths(widths, q=q, group_width=g, bottleneck_multiplier=bm, rounding=rounding)
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
    fitted_spec = spec_from_dict({**base, **fields}, "fitted spec")
    header = yaml_comment(
        f"fitted by regnet-space fit to {source}: e_fit = {fit.error:.6g}"
        f"{' (exact)' if fit.exact else ''}"
    )
    written = None
    if args.output is not None or not args.json:
        written = write_output(args.output or STDIO, header + dump_spec(fitted_spec), args.force)
    if args.json:
        out = fit.as_dict() | {"notes": notes, "output": written}
        out["spec"] = fitted_spec.model_dump(mode="json")
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    summary = _fit_text(fit, source, notes, None if to_stdout else written)
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
