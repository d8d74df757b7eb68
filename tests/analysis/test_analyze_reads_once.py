"""`analyze DB` decodes the study database once, shared by the analysis (load_study) and the
study report; load_study given a database already read uses it and reads nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from study_helpers import write_study

from regnet_space.analysis import studydb
from regnet_space.analysis.results import load_study
from regnet_space.cli import main
from regnet_space.study.database import StudyDatabase
from regnet_space.study.studyfile import resolve


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study database of 40 trials, 36 finished (errors that differ), filled through the
    driver's database layer."""
    folder = tmp_path_factory.mktemp("once")
    study = resolve(write_study(folder / "s.yaml", n=40, keep="none"))
    db = folder / "s.db"
    curve = [{"epoch": 1, "train_loss": 2.0, "test_error": 50.0, "lr": 0.1, "seconds": 1.0}]
    with StudyDatabase.open(db, study) as opened:
        opened.record_results(
            (
                t.record.id,
                {
                    "error": 30.0 + (t.record.id * 7) % 13,
                    "epochs": 1,
                    "curve": curve,
                    "train_seconds": 1.0,
                    "images_per_second": 9.0,
                    "peak_memory_bytes": 1,
                    "device": "cpu",
                    "host": "h",
                    "synthetic": False,
                },
            )
            for t in study.trials[4:]
        )
    return db


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the trials decoded from any study database (the real decoder still runs)."""
    calls = [0]
    real = studydb.trial_from_row

    def counted(row: tuple[Any, ...]) -> studydb.Trial:
        calls[0] += 1
        return real(row)

    monkeypatch.setattr(studydb, "trial_from_row", counted)
    return calls


def test_analyze_decodes_the_database_once(
    filled: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _count_decodes(monkeypatch)
    assert main(["analyze", str(filled), "--json", "--resamples", "50"]) == 0
    assert calls[0] == 40
    data = json.loads(capsys.readouterr().out)
    assert data["studies"][0]["counts"]["done"] == 36
    assert data["inputs"][0]["records"] == 36


def test_load_study_uses_a_database_already_read(
    filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = studydb.read_study_db(filled)
    calls = _count_decodes(monkeypatch)
    given = load_study([filled], databases=[db])
    assert calls[0] == 0
    assert given == load_study([filled])
    assert calls[0] == 40
