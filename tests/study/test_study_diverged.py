"""Diverged trials flagged (database, status, export, analyze), schema-1 databases read and
upgraded, several study files in one `study run`, and `analyze --pairs adjacent`."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from study_helpers import TINY_RECIPE, run_cli, status_json, write_study

from regnet_space.analysis.studydb import DIVERGED_FACTOR, is_diverged, read_study_db

LIMIT = DIVERGED_FACTOR * math.log(10)  # 2 ln 10 = 4.61 on digits' 10 classes


def test_the_rule() -> None:
    """Every trial starts near ln(classes) (small initial logits); twice that is a blow-up."""
    assert pytest.approx(4.605, abs=1e-3) == LIMIT
    healthy = [{"train_loss": 2.2}, {"train_loss": 0.9}]
    assert not is_diverged(healthy, 10)
    assert is_diverged([{"train_loss": 7.0}, {"train_loss": 2.3}], 10)  # the epoch 1
    assert is_diverged([{"train_loss": 0.5}, {"train_loss": 4.7}], 10)  # a later blow-up
    assert not is_diverged([{"train_loss": 4.7}], 100)  # ln 100 = 4.6: chance level there


# ---------------------------------------------------------------------------------------------
# The divergence test: the one study here that diverges on purpose


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny designs under a recipe that blows up on purpose: base_lr 16 (lr 8), no warmup,
    no zero-init of the last BN (epoch-1 mean losses of tens against ln 10 = 2.3)."""
    folder = tmp_path_factory.mktemp("diverged")
    recipe = {**TINY_RECIPE, "name": "blow-up", "base_lr": 16.0, "epochs": 2}
    study = write_study(folder / "div.yaml", n=2, recipe=recipe)
    proc = run_cli("study", "run", str(study), "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr  # a finite loss: the trials finish
    return folder / "div.db"


def test_a_blown_up_trial_is_flagged_everywhere(diverged_run: Path) -> None:
    study = read_study_db(diverged_run)
    flagged = [t for t in study.trials if t.diverged]
    for t in study.trials:
        assert t.state == "done"
        assert t.diverged == (max(c["train_loss"] for c in t.curve) > LIMIT)
    assert flagged, [[c["train_loss"] for c in t.curve] for t in study.trials]
    st = status_json(diverged_run)
    assert [d["id"] for d in st["diverged"]] == [t.id for t in flagged]
    assert st["diverged_rule"] == "mean training loss above 2 ln 10 = 4.61 in an epoch"
    text = run_cli("study", "status", str(diverged_run), cwd=diverged_run.parent).stdout
    assert f"diverged: {len(flagged)} trial(s) (mean training loss above 2 ln 10" in text
    rows = run_cli("study", "export", str(diverged_run), "-o", "-", cwd=diverged_run.parent)
    assert [json.loads(r)["diverged"] for r in rows.stdout.splitlines()] == [
        t.diverged for t in study.trials
    ]
    folder = diverged_run.parent
    proc = run_cli("analyze", str(diverged_run), "--no-plots", "-o", "report", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    note = [line for line in proc.stderr.splitlines() if "diverged" in line]
    assert len(note) == 1 and flagged[0].name in note[0] and "2 ln 10" in note[0]
    html = (folder / "report" / "report.html").read_text()
    assert "<th aria-sort='none'>flags</th>" in html and ">diverged</td>" in html
    kept = run_cli("analyze", str(diverged_run), "--json", "--filter", "diverged!=true", cwd=folder)
    assert json.loads(kept.stdout)["spaces"][0]["n"] == len(study.trials) - len(flagged)


# ---------------------------------------------------------------------------------------------
# A database of schema 1 (made before stopped trials and the flag)

SCHEMA_1 = """CREATE TABLE trials (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, record TEXT NOT NULL,
    flops INTEGER NOT NULL, params INTEGER NOT NULL, acts INTEGER NOT NULL,
    recipe TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error REAL, epochs INTEGER, curve TEXT,
    train_seconds REAL, images_per_second REAL, peak_memory_bytes INTEGER, device TEXT,
    host TEXT, synthetic INTEGER, message TEXT, started_at REAL, finished_at REAL)"""


def _as_schema_1(db: Path) -> list[tuple[Any, ...]]:
    """Rewrite a finished study database as schema 1 wrote it; returns its trial rows."""
    con = sqlite3.connect(db)
    with con:
        con.execute("ALTER TABLE trials RENAME TO t2")
        con.execute(SCHEMA_1)
        columns = ", ".join(r[1] for r in con.execute("PRAGMA table_info(trials)"))
        con.execute(f"INSERT INTO trials SELECT {columns} FROM t2")
        con.execute("DROP TABLE t2")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        con.execute("DELETE FROM meta WHERE key = 'classes'")
    rows = con.execute("SELECT * FROM trials ORDER BY id").fetchall()
    con.close()
    return rows


def test_a_schema_1_database_is_read_then_upgraded(diverged_run: Path, tmp_path: Path) -> None:
    db = tmp_path / "div.db"
    db.write_bytes(diverged_run.read_bytes())
    (tmp_path / "div.yaml").write_text((diverged_run.parent / "div.yaml").read_text())
    before = _as_schema_1(db)
    st = status_json(db)
    assert st["done"] == 2 and st["diverged"] is None  # not judged: the rows do not say
    rows = run_cli("study", "export", str(db), "-o", "-", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(r)["diverged"] for r in rows] == [None, None]
    proc = run_cli("analyze", str(db), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)["inputs"][0]["facts"]
    assert facts["diverged"].startswith("not judged")
    # The next run (nothing left to train) upgrades it in place and judges the trials.
    again = run_cli("study", "run", "div.yaml", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["attempts"] == 0, again.stderr
    con = sqlite3.connect(db)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    after = con.execute("SELECT * FROM trials ORDER BY id").fetchall()
    con.close()
    assert version == ("2",)
    assert [r[:-1] for r in after] == before  # every value kept, the flag added
    assert [bool(r[-1]) for r in after] == [t.diverged for t in read_study_db(diverged_run).trials]


# ---------------------------------------------------------------------------------------------
# Several study files in one run


def test_study_run_takes_several_files(tmp_path: Path) -> None:
    one = write_study(tmp_path / "one.yaml", n=2)
    two = write_study(tmp_path / "two.yaml", n=2, name="two", seed=1)
    proc = run_cli("study", "run", "one.yaml", "two.yaml", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = json.loads(proc.stdout)
    assert [s["db"] for s in summaries] == ["one.db", "two.db"]
    assert all(s["done"] == 2 for s in summaries)
    assert read_study_db(tmp_path / "two.db").name == "two"
    # Refused before anything runs: --db with several files, two files for one database, and
    # any bad file among them (the good ones are not started).
    bad = run_cli("study", "run", str(one), str(two), "--db", "x.db", cwd=tmp_path)
    assert bad.returncode == 2 and "--db names one database" in bad.stderr
    (tmp_path / "sub").mkdir()
    write_study(tmp_path / "sub" / "one.yaml", n=2)
    same = run_cli("study", "run", "one.yaml", "sub/one.yaml", cwd=tmp_path)
    assert same.returncode == 2 and "would both write one.db" in same.stderr
    write_study(tmp_path / "three.yaml", n=2, name="three")
    (tmp_path / "four.yaml").write_text("name: four\nn: 0\n")
    proc = run_cli("study", "run", "three.yaml", "four.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "four.yaml" in proc.stderr
    assert not (tmp_path / "three.db").exists()


# ---------------------------------------------------------------------------------------------
# analyze --pairs adjacent


def test_adjacent_pairs_are_the_neighbours_of_all_pairs() -> None:
    from regnet_space.analysis.results import study_from_records
    from regnet_space.analysis.stats import analyze

    rng = np.random.default_rng(7)
    groups = {}
    for k, label in enumerate("ABCD"):
        groups[label] = [
            {"depth": int(d), "w0": 24, "wa": 24.0, "wm": 2.5, "group_width": 8,
             "error": float(e)}
            for d, e in zip(rng.integers(8, 20, 30), rng.normal(20 - k, 2, 30), strict=True)
        ]  # fmt: skip
    study = study_from_records(groups)
    every = analyze(study, resamples=200)
    steps = analyze(study, resamples=200, pairs="adjacent")
    assert [(c.a, c.b) for c in steps.comparisons] == [("A", "B"), ("B", "C"), ("C", "D")]
    assert steps.pairs == "adjacent" and steps.to_dict()["pairs"] == "adjacent"
    same = {(c.a, c.b): c for c in every.comparisons}
    assert all(c == same[(c.a, c.b)] for c in steps.comparisons)  # the same numbers
