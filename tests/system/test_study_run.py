"""`study run` end to end on real digits: local workers, a local Ray, failures, export, analyze."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from study_helpers import cli_env, write_study

from regnet_space.analysis.results import read_records
from regnet_space.analysis.studydb import read_study_db
from regnet_space.cli import main

CHANCE = 90.0  # top-1 error of guessing among 10 classes


def _rows(db: Path) -> list[tuple]:
    return sqlite3.connect(db).execute("SELECT * FROM trials ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4-trial, 1-epoch digits study run once on 2 local workers (1 thread each)."""
    folder = tmp_path_factory.mktemp("local")
    study = write_study(folder / "tiny.yaml")
    db = folder / "tiny.db"
    assert main(["study", "run", str(study), "--db", str(db), "--quiet"]) == 0
    return db


def test_local_run_records_every_trial(local_run: Path) -> None:
    db = read_study_db(local_run)
    assert db.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 0, "stopped": 0}
    for t in db.trials:
        assert t.attempts == 1 and t.message is None and t.device == "cpu"
        assert t.epochs == 1 and len(t.curve) == 1 and t.curve[0]["test_error"] == t.error
        assert 0 <= t.error < CHANCE
        assert t.train_seconds > 0 and t.images_per_second > 0 and t.peak_memory_bytes > 0
        assert t.started_at <= t.finished_at
        assert t.record["id"] == t.id and t.record["flops"] == t.flops
    # Real learning: one epoch of the best tiny design is far better than chance.
    assert db.done()[0].error < 60


def test_rerun_keeps_finished_trials(local_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _rows(local_run)
    study = local_run.parent / "tiny.yaml"
    assert main(["study", "run", str(study), "--db", str(local_run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["attempts"] == 0 and summary["done"] == 4
    assert _rows(local_run) == before


def test_status(local_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "status", str(local_run), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["done"], st["pending"], st["running"], st["failed"]) == (4, 0, 0, 0)
    errors = [b["error"] for b in st["best"]]
    assert errors == sorted(errors) and len(errors) == 4
    assert main(["study", "status", str(local_run)]) == 0
    out = capsys.readouterr().out
    assert "4 done" in out and "best 4" in out


def test_export_round_trip(
    local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = read_study_db(local_run)
    out = tmp_path / "results.jsonl"
    assert main(["study", "export", str(local_run), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [json.loads(json.dumps(t.export_row())) for t in db.trials]
    for row, t in zip(rows, db.trials, strict=True):
        assert {k: row[k] for k in t.record} == dict(t.record)  # every sample record field
        assert row["error"] == t.error and row["state"] == "done" and row["attempts"] == 1
        assert row["curve"][0]["epoch"] == 1
    # Exclusive unless --force; stdout with -o -.
    assert main(["study", "export", str(local_run), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["study", "export", str(local_run), "-o", "-"]) == 0
    assert capsys.readouterr().out == out.read_text()
    # CSV: the project's own reader gets the same values back.
    path = tmp_path / "results.csv"
    assert main(["study", "export", str(local_run), "-o", str(path)]) == 0
    back = read_records(path)
    assert len(back) == 4
    for rec, row in zip(back, rows, strict=True):
        for key in ("id", "flops", "params", "acts", "widths", "depths", "error", "train_seconds"):
            assert rec.data[key] == row[key], key
        assert rec.data["curve"] == row["curve"]
    with path.open() as fh:
        assert next(csv.reader(fh))[:2] == ["id", "name"]


def test_analyze_a_study_database(local_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["analyze", str(local_run), "-o", str(out), "--resamples", "50"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "results.json", "edf.png"} <= names
    assert "study-1-tiny-digits-curves.png" in names and "study-1-tiny-digits-cost.png" in names
    report = (out / "report.html").read_text()
    assert "Training curves and measured cost" in report and "images/s" in report
    data = json.loads((out / "results.json").read_text())
    db = read_study_db(local_run)
    assert data["spaces"][0]["n"] == 4 and data["spaces"][0]["best"] == db.done()[0].error
    assert data["studies"][0]["best"][0]["train_seconds"] == db.done()[0].train_seconds


def test_analyze_refuses_synthetic_results(
    local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "synthetic.db"
    copy.write_bytes(local_run.read_bytes())
    con = sqlite3.connect(copy)
    con.execute("UPDATE trials SET synthetic = 1")  # as a `data: synthetic` study records them
    con.commit()
    con.close()
    assert main(["analyze", str(copy), "--no-plots", "--json"]) == 2
    err = capsys.readouterr().err
    assert "synthetic data" in err and "--allow-synthetic" in err and err.count("\n") == 1
    assert main(["analyze", str(copy), "--json", "--allow-synthetic", "--resamples", "20"]) == 0


def test_failing_trial_is_retried_then_failed(tmp_path: Path) -> None:
    """A learning rate that makes training diverge fails its trials for real; others finish."""
    study = write_study(tmp_path / "f.yaml", n=4, seed=0, search={"lr": {"values": [0.4, 1e4]}})
    db = tmp_path / "f.db"
    assert main(["study", "run", str(study), "--db", str(db), "--quiet"]) == 1
    trials = read_study_db(db).trials
    bad = [t for t in trials if t.recipe["base_lr"] == 1e4]
    good = [t for t in trials if t.recipe["base_lr"] == 0.4]
    assert bad and good  # this seed draws both values
    for t in bad:
        assert t.state == "failed" and t.attempts == 2  # the first try and one retry
        assert "training diverged" in t.message and t.error is None
    for t in good:
        assert t.state == "done" and t.attempts == 1 and t.error < CHANCE


def test_ray_gives_the_local_errors(
    local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_home: Path
) -> None:
    """A real local Ray cluster runs the same study: the same error for every trial."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(ray_home))  # Ray's token under the tests' own home
    db = tmp_path / "ray.db"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        study = local_run.parent / "tiny.yaml"
        code = main(["study", "run", str(study), "--db", str(db), "--executor", "ray", "--quiet"])
    finally:
        ray.shutdown()
    assert code == 0
    ours = read_study_db(db)
    local = read_study_db(local_run)
    assert ours.counts()["done"] == 4
    assert [t.error for t in ours.trials] == [t.error for t in local.trials]
    assert [t.curve[0]["train_loss"] for t in ours.trials] == [
        t.curve[0]["train_loss"] for t in local.trials
    ]


def test_searched_recipe_fields_are_analyzed_as_parameters(local_run: Path) -> None:
    """A study's searched training settings get good ranges and correlations like design ones."""
    from regnet_space.analysis.results import study_from_records
    from regnet_space.analysis.stats import analyze

    rows = read_study_db(local_run).done()
    records = [t.export_row() | {"recipe.base_lr": 0.1 * (i + 1)} for i, t in enumerate(rows)]
    study = study_from_records({"tiny": records})
    assert "recipe.base_lr" in study.parameters
    result = analyze(study, resamples=20)
    rho = {c.variable: c.rho for c in result.correlations}
    assert rho["recipe.base_lr"] == pytest.approx(1.0)  # rows are best first: error rises with it


def test_driver_status_export_analyze_never_import_torch(local_run: Path, tmp_path: Path) -> None:
    """Only the workers train: the driver and the readers start without torch."""
    study = str(local_run.parent / "tiny.yaml")
    db, out = str(local_run), str(tmp_path / "r.jsonl")
    code = (
        "import sys\n"
        "from regnet_space.cli import main\n"
        f"assert main(['study', 'run', {study!r}, '--db', {db!r}, '--quiet']) == 0\n"
        f"assert main(['study', 'status', {db!r}, '--json']) == 0\n"
        f"assert main(['study', 'export', {db!r}, '-o', {out!r}]) == 0\n"
        f"assert main(['analyze', {db!r}, '--no-plots', '--resamples', '10']) == 0\n"
        "import regnet_space.study.driver, regnet_space.study.executors\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=cli_env(),
                   capture_output=True)  # fmt: skip
