"""`regnet-space analyze` at the command line: what it expects, --force with --no-plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import ROOT, Y040, run


def test_analyze_force_no_plots_removes_its_old_pictures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    zoo = str(ROOT / "examples" / "zoo_errors.csv")
    argv = ["analyze", zoo, "-o", str(out), "--resamples", "50"]
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    assert {"edf.png", "complexity.png"} <= {p.name for p in out.iterdir()}
    (out / "mine.png").write_bytes(b"the user's own file")
    status, _, err = run(capsys, *argv, "--no-plots", "--force")
    assert status == 0, err
    shown = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert shown == ["mine.png", "report.html", "results.json"]


def test_analyze_on_a_spec_file_says_it_expects_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "analyze", Y040)
    assert status == 2 and out == "" and "expects results" in err and err.count("\n") == 1
