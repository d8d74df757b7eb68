"""`regnet-space report`: folders, formats, conventions and input sizes, no torch for the
analytic counts, --counter torch."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import SPECS, TINY, Y040, run, spec_file

from regnet_space import count, load_spec


def test_report_folder_json_matches_count(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", str(SPECS), "--format", "json")
    assert status == 0
    rows = json.loads(out)
    files = sorted(SPECS.glob("*.yaml"))
    assert [Path(r["spec"]).name for r in rows] == [f.name for f in files]
    for row, f in zip(rows, files, strict=True):
        c = count(load_spec(f))
        assert (row["flops"], row["params"], row["acts"]) == (c.flops, c.params, c.acts)
        assert row["input_size"] == load_spec(f).input_size and "output_shape" not in row
        for key in ("name", "widths", "depths", "group_widths", "bottleneck_widths", "spec"):
            assert key in row


def test_report_formats(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    status, out, _ = run(capsys, "report", Y040, str(tiny), "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["RegNetY-4.0GF", "tiny"]
    assert rows[0]["params"] == "20646656"
    status, out, _ = run(capsys, "report", Y040, "--format", "markdown")
    assert status == 0 and out.startswith("| spec |") and "| RegNetY-4.0GF |" in out
    status, out, _ = run(capsys, "report", Y040)
    assert status == 0 and "RegNetY-4.0GF" in out and "20.65" in out


def test_report_conventions_and_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_spec(Y040)
    for conv in ("paper", "fvcore", "torchvision"):
        status, out, _ = run(capsys, "report", Y040, "--format", "json", "--convention", conv)
        assert status == 0
        assert json.loads(out)[0]["flops"] == count(spec, convention=conv).flops
    status, out, _ = run(capsys, "report", Y040, "--format", "json", "--input-size", "160")
    assert json.loads(out)[0]["flops"] == count(spec, 160).flops


def test_real_process_no_traceback_and_no_torch_for_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\x00\x01garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "regnet_space", "report", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    code = (
        "import sys; from regnet_space.cli import main; "
        f"rc = main(['report', {str(SPECS)!r}, '--format', 'json']); "
        "sys.stdout.flush(); assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(list(SPECS.glob("*.yaml")))


def test_counter_torch_report_and_build(capsys: pytest.CaptureFixture[str]) -> None:
    # FlopCounterMode on the meta device: y10b is counted without allocating its weights.
    status, out, _ = run(capsys, "report", str(SPECS / "y10b.yaml"), Y040, "--counter", "torch")
    assert status == 0 and "2/2 agree" in out
    status, out, _ = run(capsys, "report", Y040, "--counter", "torch", "--format", "json")
    row = json.loads(out)[0]
    tv = count(load_spec(Y040), convention="torchvision").flops
    assert row["torch_counter"]["ok"] is True
    assert row["torch_counter"]["flop_counter_mode"] == 2 * tv
    status, out, _ = run(capsys, "build", str(SPECS / "x002.yaml"), "--counter", "torch")
    assert status == 0 and "OK, exact" in out.splitlines()[-1]


def test_report_dir_reports_good_files_then_bad_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec_file(tmp_path, "a.yaml", TINY)
    spec_file(tmp_path, "b.yaml", TINY.replace("depth: 3", "depth: 0"))
    spec_file(tmp_path, "c.yaml", (SPECS / "spaces" / "regnetx.yaml").read_text())
    (tmp_path / "sub").mkdir()
    spec_file(tmp_path / "sub", "d.yaml", TINY.replace("tiny", "deep"))
    status, out, err = run(capsys, "report", str(tmp_path))
    assert status == 2
    assert "a.yaml" in out and "b.yaml" not in out and "d.yaml" not in out
    lines = err.splitlines()
    assert any("skipped" in line and "c.yaml" in line for line in lines)
    assert any(str(tmp_path / "b.yaml") + ": depth" in line for line in lines)
    assert len(lines) == 2
    status, out, err = run(capsys, "report", str(tmp_path), "--recursive", "--json")
    assert status == 2 and [r["name"] for r in json.loads(out)] == ["tiny", "deep"]


def test_report_of_only_bad_files_names_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run(capsys, "report", str(tmp_path / "none.yaml"), "/dev/null")
    assert status == 2 and out == ""
    assert "none.yaml: no such file" in err and "/dev/null:" in err and err.count("\n") == 2
