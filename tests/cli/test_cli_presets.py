"""`regnet-space list` and shipped names (cli.presets): every command takes a preset's name from
any folder; the list of specs and spaces with their counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import ROOT, run

from regnet_space import count, load_spec


def test_commands_take_shipped_names_from_any_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "report", "y040", "--json")
    assert status == 0 and json.loads(out)[0]["name"] == "RegNetY-4.0GF"
    status, out, _ = run(capsys, "sample", "regnety", "-n", "3", "-o", "-", "--quiet")
    assert status == 0 and len(out.splitlines()) == 3
    status, out, _ = run(capsys, "analyze", "zoo_errors", "--json", "--resamples", "20")
    assert status == 0 and json.loads(out)["metric"] == "error"


def test_list_prints_the_shipped_specs_and_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "list", "--json")
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)}
    assert status == 0
    assert {p.stem for p in (ROOT / "specs").glob("*.yaml")} == {n for k, n in rows if k == "spec"}
    assert {n for k, n in rows if k == "space"} >= {"regnetx", "regnety", "anynetx_e"}
    y040 = rows[("spec", "y040")]
    c = count(load_spec(ROOT / "specs" / "y040.yaml"))
    assert (y040["flops"], y040["params"]) == (c.flops, c.params)
    assert rows[("space", "regnety")]["flops"] is None
    status, out, _ = run(capsys, "list")
    line = next(r for r in out.splitlines() if r.startswith("y040 "))
    assert "4.0 GF" in line and "20.6 M params" in line and "y040.yaml" in line
