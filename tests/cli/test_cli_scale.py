"""`regnet-space scale`: a miss is reported and fails unless allowed; the build limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import SPECS, run

from regnet_space import load_spec


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
