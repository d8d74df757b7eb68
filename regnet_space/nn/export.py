"""Export a built model: torch.export programs (.pt2) and ONNX files, checked for equal outputs.

A model is wrapped to take `pixel_values` and return one tensor (`logits`, or
`last_hidden_state` for a model without head); the batch dimension stays dynamic. Files are
written atomically and never overwrite without `force`. ONNX export uses PyTorch's
torch.export-based exporter (packages onnx and onnxscript); checking runs onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from ..infra.atomic import TMP_PREFIX
from ..infra.errors import RegNetSpaceError
from ..infra.outputs import OutputSet, call_writer
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

    outputs = OutputSet(force)
    final = outputs.file(p)
    # Serialized in memory first: torch.export.save aborts the process on a full disk, while
    # a failed write of bytes is an ordinary error (one line).
    buf = io.BytesIO()
    torch.export.save(program, buf)
    with outputs.staging() as staging:
        staging.write_bytes(final, buf.getvalue())
    return p


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
    external_data: bool | None = None,
) -> Path:
    """Write the model as an ONNX file (input `pixel_values`, NCHW float32), atomically.

    The weights go to `NAME.onnx.data` beside it when `external_data` is true, or by default
    when they pass ONNX's 2 GB limit.
    """
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
    return _save_onnx(program, p, force, external_data)


def onnx_outputs(path: str | Path, force: bool) -> OutputSet:
    """The files an ONNX export writes, checked: the model and `NAME.onnx.data` beside it.

    Models over 2 GB keep their weights in that data file (the model refers to it by its name,
    so it is written under its final name and committed with the model). With force, a data
    file of an earlier export that this one does not need is removed in the same commit.
    """
    p = Path(path)
    outputs = OutputSet(force)
    outputs.file(p.with_name(p.name + ".data"), optional=True)
    outputs.file(p)  # last: a model file means its data file is complete
    return outputs


def _save_onnx(program: Any, p: Path, force: bool, external_data: bool | None) -> Path:
    outputs = onnx_outputs(p, force)
    data = p.with_name(p.name + ".data")
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX + f"{os.getpid()}-", dir=p.parent) as d:
        # Saved under the final names in a private folder, so the model refers to NAME.onnx.data.
        call_writer(
            lambda dest: program.save(dest, external_data=external_data), Path(d) / p.name, p
        )
        with outputs.staging() as staging:
            for name, target in ((data.name, data), (p.name, p)):
                if (Path(d) / name).exists():
                    os.replace(Path(d) / name, staging.path(target))
    return p


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
