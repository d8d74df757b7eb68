"""A spec carries its input size: plan, count and dump use it; report, build, scale, sample and
fit keep it unless told otherwise; a space has one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import SPECS, TINY, Y040, run, spec_file

from regnet_space import count, load_spec, plan
from regnet_space.core.spec import dump_spec


def test_spec_input_size_is_used_by_plan_count_and_dump() -> None:
    at160 = load_spec(TINY + "input_size: 160\n")
    at224 = load_spec(TINY)
    assert plan(at160).input_size == 160 and plan(at224).input_size == 224
    assert count(at160).flops == count(at224, 160).flops != count(at224).flops
    assert plan(at160, 224).input_size == 224  # an explicit size still wins
    assert "input_size: 160" in dump_spec(at160) and load_spec(dump_spec(at160)) == at160
    # Specs at the default read and write as they always did (no new line in old files).
    assert "input_size" not in dump_spec(load_spec(Y040))


def test_report_and_build_use_the_spec_input_size_unless_overridden(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, "s160.yaml", TINY + "input_size: 160\n")
    status, out, err = run(capsys, "report", str(spec), "--json")
    assert status == 0, err
    (row,) = json.loads(out)
    assert row["input_size"] == 160 and row["flops"] == count(load_spec(TINY), 160).flops
    status, out, _ = run(capsys, "report", str(spec), "--json", "--input-size", "224")
    assert json.loads(out)[0]["input_size"] == 224
    status, out, err = run(capsys, "build", str(spec), "--json")
    assert status == 0, err
    data = json.loads(out)
    assert data["input_size"] == 160 and data["output_shape"][2:] == [20, 20]  # 224: 28 x 28
    assert data["output_shape"] == list(plan(load_spec(TINY), 160).output_shape)


def test_scaling_a_scaled_spec_back_returns_to_y040(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    up, down = tmp_path / "up.yaml", tmp_path / "down.yaml"
    assert run(capsys, "scale", Y040, "--flops-factor", "4", "-o", str(up))[0] == 0
    assert load_spec(up).input_size == 240  # a field, not a comment
    assert run(capsys, "scale", str(up), "--flops-factor", "0.25", "-o", str(down))[0] == 0
    back, y040 = plan(load_spec(down)), plan(load_spec(Y040))
    assert (back.widths, back.depths, back.group_widths) == (
        y040.widths,
        y040.depths,
        y040.group_widths,
    )
    assert back.input_size == 224 and count(back) == count(y040)


def test_sample_specs_dir_writes_the_input_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, folder = tmp_path / "s.jsonl", tmp_path / "specs"
    argv = ["sample", "regnety", "-n", "3", "--input-size", "160", "-o", str(out)]
    status, _, err = run(capsys, *argv, "--specs-dir", str(folder), "--quiet")
    assert status == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))  # not the manifest
    assert len(files) == 3
    for path, record in zip(files, records, strict=True):
        spec = load_spec(path)
        assert spec.input_size == 160 and count(spec).flops == record["flops"]


def test_a_space_has_one_input_size() -> None:
    from regnet_space import SpaceError, load_space

    text = (
        (SPECS / "spaces" / "regnetx.yaml")
        .read_text()
        .replace("spec:\n", "spec:\n  input_size: 160\n")
    )
    assert "input_size: 160" in text
    with pytest.raises(SpaceError, match=r"spec\.input_size: give the space's input_size"):
        load_space(text)


def test_fit_keeps_the_input_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = spec_file(tmp_path, "s.yaml", TINY + "input_size: 96\n")
    status, out, err = run(capsys, "fit", str(src))
    assert status == 0, err
    assert load_spec(out).input_size == 96
