"""Standard streams: `-o -` writes the data to stdout and the summary to stderr; `-` as a spec
reads stdin; fit without -o prints its YAML."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from cli_helpers import TINY, Y040, cli, run

from regnet_space import load_spec


def test_dash_output_writes_the_data_to_stdout_and_the_summary_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "scale", Y040, "--flops-factor", "2", "-o", "-")
    assert status == 0 and load_spec(out).name == "RegNetY-4.0GF x2"
    assert "flop factor: asked x2" in err and "flop factor" not in out
    status, out, err = run(capsys, "sample", "regnety", "-n", "3", "-o", "-")
    assert status == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [0, 1, 2]
    assert "3 designs" in err
    status, out, _ = run(capsys, "sample", "regnety", "-n", "3", "-o", "-", "--format", "csv")
    assert status == 0 and out.startswith("id,name,") and len(out.splitlines()) == 4
    status, out, err = run(capsys, "fit", Y040, "-o", "-")
    assert status == 0 and load_spec(out).depth == 22 and "e_fit" in err


def test_fit_without_output_prints_the_fitted_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "fit", "--widths", "24,56,152x4,368x7")
    assert status == 0 and load_spec(out).name == "fitted" and "e_fit" in err


def test_a_spec_argument_dash_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for command in (["report", "-", "--json"], ["build", "-", "--json"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(TINY))
        status, out, err = run(capsys, *command)
        assert status == 0, err
        data = json.loads(out)
        assert (data[0] if isinstance(data, list) else data)["name"] == "tiny"
    # A real pipe, as a shell gives it.
    done = cli("scale", "-", "--flops-factor", "2", stdin=Path(Y040).read_text())
    assert done.returncode == 0 and load_spec(done.stdout).name == "RegNetY-4.0GF x2"
