"""`regnet-space scale`: a miss is reported and fails unless allowed; the build limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import SPECS, run

from regnet_space import load_spec
from regnet_space.space.scaling import scale_spec


def test_scale_miss_is_reported_and_fails_unless_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    x002, out = str(SPECS / "x002.yaml"), tmp_path / "small.yaml"
    status, stdout, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "-o", str(out))
    assert status == 1 and not out.exists()
    assert "missed the flop factor" in err and "tolerance 10 %" in err and "stages: 4 -> 3" in err
    status, stdout, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "--json")
    data = json.loads(stdout)
    assert status == 1 and data["on_target"] is False and data["miss_percent"] > 100
    assert data["tolerance_percent"] == 10 and "missed the flop factor" in err
    argv = ["scale", x002, "--flops-factor", "0.01", "-o", str(out), "--allow-miss"]
    status, _, err = run(capsys, *argv)
    assert status == 0 and out.exists() and "missed the flop factor" in err
    status, _, err = run(capsys, "scale", x002, "--flops-factor", "0.01", "--tolerance", "600")
    assert status == 0 and "missed" not in err


def test_scale_over_the_build_limit_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "scale", str(SPECS / "x002.yaml"), "--flops-factor", "1000")
    assert status == 0 and "over the build limit" in err and "--allow-large" in err
    assert load_spec(out).input_size == 316


def test_cli_scale_writes_a_spec_the_other_commands_accept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from regnet_space.cli import main

    out = tmp_path / "y040x4.yaml"
    assert main(["scale", str(SPECS / "y040.yaml"), "--flops-factor", "4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "achieved x3.928" in text and "input size: 240" in text and str(out) in text
    assert "\ninput_size: 240\n" in out.read_text()
    assert main(["report", str(out), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["flops"] == scale_spec(load_spec(SPECS / "y040.yaml"), 4).flops
    # No overwrite without --force; one line, exit 2.
    assert main(["scale", str(SPECS / "y040.yaml"), "--flops-factor", "2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    args = ["scale", str(SPECS / "y040.yaml"), "--flops-factor", "2", "-o", str(out), "--force"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["asked_flop_factor"] == 2 and abs(data["achieved_flop_factor"] / 2 - 1) < 0.1
    assert load_spec(out).model_dump(mode="json") == data["spec"]


def test_cli_scale_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from regnet_space.cli import main

    spec = str(SPECS / "x002.yaml")
    assert main(["scale", spec, "--flops-factor", "2", "--weights", "q9"]) == 2
    assert "--weights" in capsys.readouterr().err
    for bad in (
        ["--flops-factor", "0"],
        ["--flops-factor", "2", "--weights", "dw", "--alpha", "1"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["scale", spec, *bad])
        assert exc.value.code == 2
    assert main(["scale", "missing.yaml", "--flops-factor", "2"]) == 2
    assert "no such file" in capsys.readouterr().err
