"""Export: torch.export programs and ONNX files give the eager model's outputs; the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from regnet_space.cli import main as run
from regnet_space.core.generator import Plan, make_plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.infra.errors import OutputError
from regnet_space.nn.export import (
    ExportError,
    export_onnx,
    export_program,
    onnx_max_abs_diff,
    program_max_abs_diff,
    save_program,
)
from regnet_space.nn.inference import fused_kernels_available, inference_model
from regnet_space.nn.model import build_model

ATOL = 1e-5
SIZE = 48

SPEC = """name: tiny
block: y
num_classes: 4
stages:
  - {width: 16, depth: 1, group_width: 8}
  - {width: 32, depth: 2, group_width: 8}
"""


def tiny(head: bool = True, **fields: Any) -> tuple[Plan, nn.Module]:
    stages = [
        {"width": 16, "depth": 1, "group_width": 8},
        {"width": 32, "depth": 2, "group_width": 8},
    ]
    data = {"name": "tiny", "block": "y", "num_classes": 4, "stages": stages} | fields
    p = make_plan(spec_from_dict(data), SIZE)
    torch.manual_seed(0)
    model = build_model(p, head)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2)
    return p, model.eval()


def test_torch_export_program_equals_eager_for_any_batch(tmp_path: Path) -> None:
    _, model = tiny()
    program = export_program(model, input_size=SIZE)
    for batch in (1, 3):
        x = torch.randn(batch, 3, SIZE, SIZE)
        assert program_max_abs_diff(program, model, x) <= ATOL
    target = save_program(program, tmp_path / "tiny.pt2")
    loaded = torch.export.load(str(target))
    assert program_max_abs_diff(loaded, model, torch.randn(2, 3, SIZE, SIZE)) <= ATOL
    with pytest.raises(OutputError, match="already exists"):
        save_program(program, target)
    with pytest.raises(ExportError, match=r"saved as \.pt2"):
        save_program(program, tmp_path / "tiny.pt")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["tiny.pt2"]


def test_torch_export_of_the_backbone_and_of_the_folded_form() -> None:
    _, backbone = tiny(head=False)
    program = export_program(backbone, input_size=SIZE)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = program.module()(x)
    assert out.shape == (2, 32, SIZE // 8, SIZE // 8)
    assert program_max_abs_diff(program, backbone, x) <= ATOL
    _, model = tiny()
    folded = inference_model(model, fused_kernels=False)
    program = export_program(folded, input_size=SIZE)
    assert program_max_abs_diff(program, model, x) <= 1e-4


def test_what_does_not_export_is_refused() -> None:
    with pytest.raises(ExportError, match="expected a RegNet model"):
        export_program(nn.Linear(2, 2))
    if fused_kernels_available():
        _, model = tiny()
        with pytest.raises(ExportError, match="fused_kernels=False"):
            export_program(inference_model(model, fused_kernels=True))


def test_onnx_file_runs_in_onnxruntime_with_equal_outputs(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    _, model = tiny()
    target = export_onnx(model, tmp_path / "tiny.onnx", input_size=SIZE)
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(batch, 3, SIZE, SIZE)
        assert onnx_max_abs_diff(target, model, x) <= ATOL
    import onnx

    graph = onnx.load(str(target)).graph
    assert [i.name for i in graph.input] == ["pixel_values"]
    assert [o.name for o in graph.output] == ["logits"]
    with pytest.raises(OutputError, match="already exists"):
        export_onnx(model, target, input_size=SIZE)
    with pytest.raises(ExportError, match=r"saved as \.onnx"):
        export_onnx(model, tmp_path / "tiny.onx", input_size=SIZE)


# ---------------------------------------------------------------------------------------------
# The export command


def test_export_command_pt2_with_converted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from regnet_space.interop.checkpoints import convert_state_dict

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    p, model = tiny()
    torch.save(convert_state_dict(model.state_dict(), p, "hf", "timm"), tmp_path / "w.pth")
    out = tmp_path / "tiny.pt2"
    argv = ["export", str(spec), "--format", "pt2", "-o", str(out), "--input-size", str(SIZE)]
    argv += ["--weights", str(tmp_path / "w.pth"), "--from", "timm", "--fold-bn"]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "exported" in printed and "max |diff|" in printed and "OK" in printed
    program = torch.export.load(str(out))
    assert program_max_abs_diff(program, model, torch.randn(2, 3, SIZE, SIZE)) <= 1e-4
    assert run(argv) == 2
    assert "already exists" in capsys.readouterr().err


def test_export_command_onnx_default_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    assert run(["export", str(spec), "--format", "onnx", "--input-size", "32"]) == 0
    assert (tmp_path / "tiny.onnx").is_file()
    assert "checked with onnxruntime" in capsys.readouterr().out


def test_export_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    assert run(["export", str(spec), "--format", "onnx", "-o", str(tmp_path / "a.pt2")]) == 2
    assert "--format onnx writes a .onnx file" in capsys.readouterr().err
    assert run(["export", str(tmp_path / "none.yaml"), "--format", "pt2"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["export", str(spec), "--format", "tflite"])
    with pytest.raises(SystemExit):
        run(["export", "--help"])
    assert "--format onnx" in capsys.readouterr().out
