"""`regnet-space build`: the table and --json, odd input sizes, --verify, --save (weights, the
resolved spec, refused targets), the size guard, the CIFAR stem."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import SPECS, TINY, Y040, run, spec_file

from regnet_space import count, load_spec
from regnet_space.cli import main


def test_build_y040_shows_the_published_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "build", Y040)
    assert status == 0, err
    assert "[1, 1088, 7, 7]" in out
    assert "4.0 GF" in out
    assert "20.6 M params" in out
    # one row per stage plus stem and head, with the SE widths of first/other blocks
    assert "8/32" in out  # stage 1: first block from the 32-wide stem, others from 128


def test_build_json_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "build", Y040, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["name"] == "RegNetY-4.0GF"
    assert data["widths"] == [128, 192, 512, 1088]
    assert data["depths"] == [2, 6, 12, 2]
    assert data["group_widths"] == [64, 64, 64, 64]
    assert data["bottleneck_widths"] == [128, 192, 512, 1088]
    assert data["params"] == 20646656
    assert round(data["flops"] / 1e9, 1) == 4.0 and round(data["acts"] / 1e6, 1) == 12.3
    assert data["input_size"] == 224 and data["output_shape"] == [1, 1088, 7, 7]
    assert all(isinstance(data[k], int) for k in ("flops", "params", "acts"))


def test_build_odd_input_size(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "build", str(tiny), "--input-size", "45", "--json")
    assert status == 0
    data = json.loads(out)
    side = 45
    for _ in range(1 + len(data["widths"])):
        side = (side - 1) // 2 + 1
    assert data["output_shape"] == [1, data["widths"][-1], side, side]


def test_build_verify_is_exact(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "build", str(tiny), "--verify", "--json")
    assert status == 0
    v = json.loads(out)["verify"]
    assert v["ok"] is True
    assert v["fvcore"] == v["analytic_fvcore"]
    status, out, _ = run(capsys, "build", str(tiny), "--verify")
    assert status == 0 and "OK, exact" in out


def test_build_save_weights_and_resolved_spec(
    capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path
) -> None:
    import torch

    from regnet_space import build_model

    target = tmp_path / "tiny.pt"
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 0, err
    state = torch.load(target, weights_only=True)
    resolved = load_spec(tmp_path / "tiny.resolved.yaml")
    assert "stages" in type(resolved).model_fields  # the explicit form
    assert count(resolved) == count(load_spec(tiny))
    model = build_model(resolved)
    model.load_state_dict(state, strict=True)
    # never silently overwritten
    before = target.read_bytes()
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 2 and "already exists" in err and err.count("\n") == 1
    assert target.read_bytes() == before
    status, _, _ = run(capsys, "build", str(tiny), "--save", str(target), "--force")
    assert status == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_save_safetensors(
    capsys: pytest.CaptureFixture[str], tiny: Path, tmp_path: Path
) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    target = tmp_path / "tiny.safetensors"
    status, _, err = run(capsys, "build", str(tiny), "--save", str(target))
    assert status == 0, err
    state = safetensors_torch.load_file(str(target))
    from regnet_space import build_model

    build_model(load_spec(tiny)).load_state_dict(state, strict=True)


def test_build_refuses_too_large_design(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "build", str(SPECS / "y10b.yaml"))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "--allow-large" in err


def test_build_and_report_show_the_cifar_stem_stride(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nblock: x\ndepth: 6\nw0: 24\nwa: 20.0\nwm: 2.5\ngroup_width: 8\n"
        "stem: cifar\nstem_width: 16\nnum_classes: 10\n"
    )
    assert main(["build", str(spec), "--input-size", "32"]) == 0
    stem_row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("stem "))
    assert stem_row.split()[:4] == ["stem", "16", "1", "1"] and stem_row.split()[4] == "32"
    assert main(["report", str(spec), "--format", "json", "--input-size", "32"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["stem_stride"] == 1


def test_build_json_stages_show_the_cifar_stem_stride(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nblock: x\ndepth: 6\nw0: 24\nwa: 20.0\nwm: 2.5\ngroup_width: 8\n"
        "stem: cifar\nstem_width: 16\nnum_classes: 10\n"
    )
    status, out, err = run(capsys, "build", str(spec), "--input-size", "32", "--json")
    assert status == 0, err
    stem = json.loads(out)["stages"][0]
    assert stem["part"] == "stem" and stem["stride"] == 1 and stem["out_size"] == 32
    status, out, err = run(capsys, "build", Y040, "--json")
    assert status == 0, err
    assert json.loads(out)["stages"][0]["stride"] == 2  # the ImageNet stem


def test_build_json_carries_the_design_and_the_stage_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "build", Y040, "--json")
    data = json.loads(out)
    assert status == 0 and data["design"] == load_spec(Y040).model_dump(mode="json")
    parts = [row["part"] for row in data["stages"]]
    assert parts == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(row["flops"] for row in data["stages"]) == data["flops"]
    assert [r["width"] for r in data["stages"][1:5]] == data["widths"]
    assert data["stages"][1]["se_width_first"] == 8 and data["stages"][1]["se_width"] == 32


@pytest.mark.parametrize("name", ["newdir/", "q.txt", "weights", "."])
def test_save_refuses_folders_and_unknown_suffixes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    spec = spec_file(tmp_path, "tiny.yaml", TINY)
    target = str(tmp_path / name) if name != "." else str(tmp_path)
    before = sorted(tmp_path.iterdir())
    status, out, err = run(capsys, "build", str(spec), "--save", target)
    assert status == 2 and out == "" and err.count("\n") == 1 and "--save" in err
    assert sorted(tmp_path.iterdir()) == before


def test_save_safetensors_without_the_package_names_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_file(tmp_path, "tiny.yaml", TINY)
    # An interpreter without safetensors: the import fails as it would there.
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    status, out, err = run(capsys, "build", str(spec), "--save", str(tmp_path / "w.safetensors"))
    assert status == 2 and out == "" and "pip install 'regnet-space[safetensors]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
