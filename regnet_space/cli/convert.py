"""`regnet-space convert`: re-key a RegNet checkpoint from one library's layout to another's.

SPEC may be any spec form (ours, a pycls config, a Hugging Face config.json): every key and
shape is checked against the model it describes. Torch is imported by the handler only, so
registering the command keeps `regnet-space --help` fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..infra.text import clean
from .args import COMMANDS, FORCE_HELP, LIBRARIES, SPEC_HELP

CONVERT_EXAMPLES = """\
examples:
  regnet-space convert regnety_040.pth --from timm --spec specs/y040.yaml -o y040.safetensors
  regnet-space convert regnet_y_800mf.pth --from torchvision --spec specs/y008_tv.yaml -o y008.pt
  regnet-space convert RegNetY-4.0GF_dds_8gpu.pyth --from pycls --bgr-to-rgb \\
      --spec RegNetY-4.0GF_dds_8gpu.yaml -o y040.pt
  regnet-space convert y040.pt --from hf --to timm --spec specs/y040.yaml -o y040_timm.pth

Keys are mapped by name and every shape is checked against the model SPEC builds; the first
key that does not fit is named. Checkpoints are read with weights_only=True (.pth, .pyth,
.pt, .bin; wrappers such as pycls's model_state are unwrapped) or as .safetensors.
The output loads into `regnet_space.build_model(spec)` with strict=True (--to hf)."""


def register(subparsers: Any) -> None:
    """Add `convert` to the command's subparsers."""
    c = subparsers.add_parser(
        "convert",
        help=COMMANDS["convert"],
        description="Re-key a RegNet checkpoint from one library's layout to another's "
        "(default: this package's, which is Hugging Face's), checking every key and shape "
        "against the model SPEC describes.",
        epilog=CONVERT_EXAMPLES,
    )
    c.add_argument("checkpoint", metavar="CHECKPOINT", help=".pth/.pyth/.pt/.bin/.safetensors")
    c.add_argument(
        "--from", dest="source", required=True, choices=LIBRARIES, help="checkpoint's layout"
    )
    c.add_argument(
        "--to", dest="target", default="hf", choices=LIBRARIES, help="output layout (hf)"
    )
    c.add_argument("--spec", required=True, metavar="SPEC", help=SPEC_HELP)
    c.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output (.safetensors, .pt, .pth)"
    )
    c.add_argument(
        "--no-head", action="store_true", help="drop the classifier; keep the backbone only"
    )
    c.add_argument(
        "--bgr-to-rgb",
        action="store_true",
        help="flip the stem conv's input channels (pycls checkpoints were trained on BGR)",
    )
    c.add_argument("--force", action="store_true", help=FORCE_HELP)
    c.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert one checkpoint and write it atomically."""
    from ..core.generator import make_plan
    from ..core.reader import load_spec
    from ..interop.checkpoints import (
        check_output,
        convert_state_dict,
        read_checkpoint,
        save_state_dict,
    )

    spec = load_spec(args.spec)
    p = make_plan(spec)
    check_output(args.output, args.force)
    state = convert_state_dict(
        read_checkpoint(args.checkpoint),
        p,
        args.source,
        args.target,
        head=not args.no_head,
        bgr_to_rgb=args.bgr_to_rgb,
        origin=args.checkpoint,
    )
    out = save_state_dict(state, args.output, args.force)
    n_params = sum(v.numel() for k, v in state.items() if "running_" not in k and "num_b" not in k)
    flip = ", stem flipped BGR -> RGB" if args.bgr_to_rgb else ""
    sys.stdout.write(
        clean(
            f"{p.name}: {args.checkpoint} ({args.source}) -> {out} ({args.target}): "
            f"{len(state)} tensors, {n_params:,} parameters{flip}"
        )
        + "\n"
    )
    return 0
