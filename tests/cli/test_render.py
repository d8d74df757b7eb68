"""Tables for people (cli.render): counts in units that fit the model's size."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import TINY, run, spec_file


def test_tiny_models_show_fitting_units(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from regnet_space.cli.render import human_count

    assert human_count(3_973_000_000, "F") == "4.0 GF"
    assert human_count(12_500_000, "F") == "12.5 MF"
    assert human_count(960_000, " params") == "960.0 K params"
    assert human_count(512, " params") == "512 params"
    status, out, _ = run(capsys, "build", str(spec_file(tmp_path, "t.yaml", TINY)))
    total = next(line for line in out.splitlines() if line.startswith("total:"))
    assert status == 0 and "MF" in total and "K params" in total and "0.0" not in total
