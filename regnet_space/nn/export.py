"""Export a built model: torch.export programs (.pt2) and ONNX files, checked for equal outputs.

A model is wrapped to take `pixel_values` and return one tensor (`logits`, or
`last_hidden_state` for a model without head); the batch dimension stays dynamic. Files are
written atomically and never overwrite without `force`. ONNX export uses PyTorch's
torch.export-based exporter (packages onnx and onnxscript); checking runs onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ..core.errors import RegNetSpaceError
from ..core.io import atomic_write_with
from .inference import InferenceRegNet
from .model import RegNetForImageClassification, RegNetModel

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportFormat",
    "TensorOutput",
    "export_onnx",
    "export_program",
    "onnx_max_abs_diff",
    "program_max_abs_diff",
    "save_program",
]

ExportFormat = Literal["onnx", "pt2"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
MAX_BATCH = 4096


class ExportError(RegNetSpaceError):
    """A model or option that cannot be exported, or a missing exporter package."""


class TensorOutput(nn.Module):
    """`pixel_values -> logits` (classification) or `-> last_hidden_state` (bare model)."""

    def __init__(self, model: RegNetForImageClassification | RegNetModel) -> None:
        super().__init__()
        self.model = model
        self.output_name = (
            "logits" if isinstance(model, RegNetForImageClassification) else "last_hidden_state"
        )

    def forward(self, pixel_values: Tensor) -> Tensor:
        out = self.model(pixel_values, return_dict=True)
        return (
            out.logits
            if isinstance(self.model, RegNetForImageClassification)
            else (out.last_hidden_state)
        )


def _exportable(model: nn.Module) -> tuple[nn.Module, str, int]:
    """The module to trace, its output name and input channels (ExportError if not ours)."""
    if isinstance(model, (RegNetForImageClassification, RegNetModel)):
        wrapped = TensorOutput(model)
        return wrapped.eval(), wrapped.output_name, model.plan.num_channels
    if isinstance(model, InferenceRegNet):
        if model.fused:
            raise ExportError(
                "the inference form with fused oneDNN kernels does not export; "
                "build it with inference_model(..., fused_kernels=False)"
            )
        name = "last_hidden_state" if model.classifier is None else "logits"
        return model.eval(), name, model.num_channels
    raise ExportError(f"expected a RegNet model, got {type(model).__name__}")


def _example(num_channels: int, input_size: int) -> Tensor:
    # batch 2: an example batch of 1 would specialise the batch dimension to a constant
    return torch.randn(2, num_channels, input_size, input_size)


def _dynamic_shapes(dynamic_batch: bool) -> dict[str, dict[int, object]] | None:
    if not dynamic_batch:
        return None
    return {"pixel_values": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}


def export_program(
    model: nn.Module, *, input_size: int = 224, dynamic_batch: bool = True
) -> torch.export.ExportedProgram:
    """torch.export of the model at a square input of side `input_size` (any batch size)."""
    module, _, channels = _exportable(model)
    x = _example(channels, input_size)
    with torch.no_grad():
        return torch.export.export(module, (x,), dynamic_shapes=_dynamic_shapes(dynamic_batch))


def save_program(
    program: torch.export.ExportedProgram, path: str | Path, force: bool = False
) -> Path:
    """Write an exported program with torch.export.save, atomically (.pt2)."""
    p = Path(path)
    if p.suffix != ".pt2":
        raise ExportError(f"{p}: a torch.export program is saved as .pt2")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: the temp name does not end in .pt2
            torch.export.save(program, fh)

    return atomic_write_with(p, write, force)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the ONNX exporter's progress lines and its expected warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(None):  # type: ignore[type-var]
                yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: int = 224,
    dynamic_batch: bool = True,
    opset: int | None = None,
    force: bool = False,
) -> Path:
    """Write the model as an ONNX file (input `pixel_values`, NCHW float32), atomically."""
    p = Path(path)
    if p.suffix != ".onnx":
        raise ExportError(f"{p}: an ONNX model is saved as .onnx")
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise ExportError(
                f"ONNX export needs the {package} package (pip install onnx onnxscript)"
            ) from None
    module, output_name, channels = _exportable(model)
    x = _example(channels, input_size)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (x,),
            dynamo=True,
            input_names=["pixel_values"],
            output_names=[output_name],
            dynamic_shapes=_dynamic_shapes(dynamic_batch),
            opset_version=opset,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportError("the ONNX exporter returned no program")
    return atomic_write_with(p, lambda tmp: program.save(tmp), force)


def _reference(model: nn.Module, pixel_values: Tensor) -> Tensor:
    module, _, _ = _exportable(model)
    with torch.no_grad():
        return module(pixel_values)


def onnx_max_abs_diff(path: str | Path, model: nn.Module, pixel_values: Tensor) -> float:
    """Largest |onnxruntime output - model output| on `pixel_values` (needs onnxruntime)."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(
            "checking an ONNX file needs onnxruntime (pip install onnxruntime)"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"pixel_values": pixel_values.numpy()})
    return float((torch.from_numpy(out) - _reference(model, pixel_values)).abs().max())


def program_max_abs_diff(
    program: torch.export.ExportedProgram, model: nn.Module, pixel_values: Tensor
) -> float:
    """Largest |exported program output - model output| on `pixel_values`."""
    with torch.no_grad():
        out = program.module()(pixel_values)
    return float((out - _reference(model, pixel_values)).abs().max())
