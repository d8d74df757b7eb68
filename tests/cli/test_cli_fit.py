"""`regnet-space fit`: a spec or --widths in, the fitted spec out; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import SPECS

from regnet_space import load_spec, plan
from regnet_space.core.spec import ParametricSpec


def per_block(spec: ParametricSpec) -> list[int]:
    """Per-block widths through the public plan."""
    return [s.width for s in plan(spec).stages for _ in range(s.depth)]


def test_cli_fit_spec_and_widths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from regnet_space.cli import main

    out = tmp_path / "fit.yaml"
    assert main(["fit", str(SPECS / "y040.yaml"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "e_fit = 0 " in text and "exact" in text and "128x2, 192x6, 512x12, 1088x2" in text
    fitted = load_spec(out)
    assert isinstance(fitted, ParametricSpec) and fitted.name == "RegNetY-4.0GF"
    assert per_block(fitted) == per_block(load_spec(SPECS / "y040.yaml"))
    assert out.read_text().startswith("# fitted by regnet-space fit")
    assert main(["fit", "--widths", "24,56,152x4,368x7", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exact"] and data["error"] == 0 and data["depth"] == 13
    assert data["spec"]["name"] == "fitted" and data["spec"]["group_width"] == 8


def test_cli_fit_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from regnet_space.cli import main

    for argv in (["fit"], ["fit", str(SPECS / "x002.yaml"), "--widths", "8"]):
        assert main(argv) == 2
        assert "SPEC or --widths" in capsys.readouterr().err
    assert main(["fit", "--widths", "8,a"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--widths" in err
