"""`regnet-space export`: a model to ONNX or a torch.export program, checked for equal outputs.

Torch is imported by the handler only, so registering the command keeps `regnet-space
--help` fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.errors import BuildError
from ..infra.text import clean
from .args import (
    ALLOW_LARGE_HELP,
    COMMANDS,
    FORCE_HELP,
    INPUT_SIZE_HELP,
    LIBRARIES,
    SPEC_HELP,
    STDIO,
    input_size,
)
from .progress import Progress

EXPORT_FORMATS = ("onnx", "pt2")

EXPORT_EXAMPLES = """\
examples:
  regnet-space export specs/y040.yaml --format onnx                  # -> y040.onnx
  regnet-space export specs/y040.yaml --weights y040.safetensors -o y040.onnx
  regnet-space export x016 -o x016.pt2 --input-size 256 --fold-bn
  regnet-space export specs/y040.yaml --format onnx --weights regnety_040.pth --from timm

The exported model takes `pixel_values` (N x C x S x S float32, any batch size N) and returns
`logits` (or `last_hidden_state` with --no-head). It is checked against the eager model on a
random batch (onnxruntime for ONNX, where installed) unless --no-check. The format is
OUT's suffix (.onnx or .pt2) unless --format says it."""

CHECK_TOLERANCE = 1e-4


def register(subparsers: Any) -> None:
    """Add `export` to the command's subparsers."""
    e = subparsers.add_parser(
        "export",
        help=COMMANDS["export"],
        description="Build the model of SPEC (optionally with converted weights) and export it "
        "as ONNX (.onnx) or a torch.export program (.pt2), checked for equal outputs.",
        epilog=EXPORT_EXAMPLES,
    )
    e.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    e.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        help="output format (default: OUT's suffix; onnx without OUT)",
    )
    e.add_argument(
        "-o", "--output", metavar="OUT", help="output file, .onnx or .pt2 (default: SPEC's name)"
    )
    e.add_argument("--weights", metavar="CHECKPOINT", help="weights to load (default: random)")
    e.add_argument(
        "--from",
        dest="source",
        default="hf",
        choices=LIBRARIES,
        help="layout of --weights (default hf: this package's)",
    )
    e.add_argument("--bgr-to-rgb", action="store_true", help="flip the stem (pycls weights)")
    e.add_argument("--input-size", type=input_size, metavar="N", help=INPUT_SIZE_HELP)
    e.add_argument("--no-head", action="store_true", help="export the backbone (no classifier)")
    e.add_argument(
        "--fold-bn", action="store_true", help="export the inference form (BatchNorm folded)"
    )
    e.add_argument(
        "--static-batch", action="store_true", help="fix the batch size to the example's (2)"
    )
    e.add_argument("--no-check", action="store_true", help="skip the output comparison")
    e.add_argument("--force", action="store_true", help=FORCE_HELP)
    e.add_argument("--allow-large", action="store_true", help=ALLOW_LARGE_HELP)
    e.set_defaults(func=cmd_export)


def _export_target(args: argparse.Namespace) -> tuple[Path, str]:
    """OUT and the format: --format, else OUT's suffix; a mismatch or unknown suffix refused."""
    if args.output is None:
        fmt = args.format or "onnx"
        stem = "spec" if args.spec == STDIO else Path(args.spec).stem
        return Path(f"{stem}.{fmt}"), fmt
    out = Path(args.output)
    suffix = out.suffix.lstrip(".")
    if args.format is None and suffix not in EXPORT_FORMATS:
        raise BuildError(f"{out}: export writes .onnx or .pt2 files (or give --format)")
    fmt = args.format or suffix
    if suffix != fmt:
        raise BuildError(f"{out}: --format {fmt} writes a .{fmt} file")
    return out, fmt


def cmd_export(args: argparse.Namespace) -> int:
    """Export one model; compare its outputs with the eager model's unless --no-check."""
    from ..core.generator import make_plan
    from ..infra.paths import check_target

    out, fmt = _export_target(args)
    from ..core.reader import load_spec

    spec = load_spec(args.spec)
    p = make_plan(spec, args.input_size)
    size = p.input_size
    check_target(out, args.force)
    if fmt == "onnx":  # large models keep their weights in OUT.data beside it
        data = out.with_name(out.name + ".data")
        if data.exists() or data.is_symlink():
            check_target(data, args.force)
    progress = Progress("export")
    try:
        return _export(args, p, out, fmt, size, progress)
    finally:
        progress.done()


def _export(
    args: argparse.Namespace, p: Any, out: Path, fmt: str, size: int, progress: Progress
) -> int:
    """Build, export, save and check one model (the steps shown by `progress`)."""
    progress.step("building the model")
    import torch

    from ..interop.checkpoints import load_converted
    from ..nn.export import export_onnx, export_program, save_program
    from ..nn.inference import inference_model
    from ..nn.model import build_model

    head = not args.no_head
    if args.weights:
        model = load_converted(
            p,
            args.weights,
            args.source,
            head=head,
            bgr_to_rgb=args.bgr_to_rgb,
            force=args.allow_large,
        )
    else:
        model = build_model(p, head, force=args.allow_large).eval()
    target = (
        inference_model(model, channels_last=False, fused_kernels=False) if args.fold_bn else model
    )
    dynamic = not args.static_batch
    x = torch.randn(2, p.num_channels, size, size)
    progress.step(f"exporting to {fmt}")
    if fmt == "onnx":
        export_onnx(target, out, input_size=size, dynamic_batch=dynamic, force=args.force)
    else:
        program = export_program(target, input_size=size, dynamic_batch=dynamic)
        save_program(program, out, args.force)
    weights = args.weights or "random weights"
    progress.done()
    sys.stdout.write(clean(f"{p.name}: exported {out} ({fmt}, {weights})") + "\n")
    if args.no_check:
        return 0
    return _check(model, out, fmt, x, progress)


def _check(model: Any, out: Path, fmt: str, x: Any, progress: Progress) -> int:
    """Compare the exported model's outputs with the eager model's on batch x; 1 on a miss."""
    import torch

    from ..nn.export import onnx_max_abs_diff, program_max_abs_diff

    progress.step("checking the outputs")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            sys.stdout.write("not checked: onnxruntime is not installed\n")
            return 0
        diff, runner = onnx_max_abs_diff(out, model, x), "onnxruntime"
    else:
        diff, runner = program_max_abs_diff(torch.export.load(str(out)), model, x), "torch.export"
    progress.done()
    ok = diff <= CHECK_TOLERANCE
    verdict = "OK" if ok else f"MISMATCH (tolerance {CHECK_TOLERANCE})"
    sys.stdout.write(f"checked with {runner} on a random batch: max |diff| {diff:.2e} {verdict}\n")
    return 0 if ok else 1
