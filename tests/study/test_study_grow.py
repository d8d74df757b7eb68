"""A study grows: n rises on an existing database and the next designs of the same seeded
sample (and the next draws of its search) are trained; nothing else of the study may change."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from study_helpers import TINY_RECIPE, run_cli, write_study

from regnet_space.study.studyfile import resolve

FAST: dict[str, Any] = {
    "recipe": {**TINY_RECIPE, "train_size": 8, "test_size": 8, "batch_size": 128},
    "search": {
        "lr": {"values": [0.2, 0.4]},
        "weight_decay": {"dist": "log_uniform", "low": 1e-5, "high": 1e-3},
    },
    "keep": "none",
}


def _rows(db: Path) -> list[tuple]:
    return sqlite3.connect(db).execute("SELECT * FROM trials ORDER BY id").fetchall()


def test_the_first_n_designs_and_draws_do_not_change_when_n_rises(tmp_path: Path) -> None:
    eight = resolve(write_study(tmp_path / "a.yaml", n=8, **FAST))
    twelve = resolve(write_study(tmp_path / "b.yaml", n=12, **FAST))
    assert [t.record.to_dict() for t in twelve.trials[:8]] == [
        t.record.to_dict() for t in eight.trials
    ]
    assert [dict(t.recipe_fields) for t in twelve.trials[:8]] == [
        dict(t.recipe_fields) for t in eight.trials
    ]
    assert len({t.record.id for t in twelve.trials}) == 12
    assert eight.digest_at(8) == eight.digest and twelve.digest_at(8) == eight.digest


def test_growing_n_from_8_to_12_keeps_8_rows_and_trains_4(tmp_path: Path) -> None:
    study, db = tmp_path / "g.yaml", tmp_path / "g.db"
    write_study(study, n=8, **FAST)
    first = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    eight = _rows(db)
    assert len(eight) == 8
    write_study(study, n=12, **FAST)
    grown = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert grown.returncode == 0, grown.stderr
    summary = json.loads(grown.stdout)
    assert (summary["attempts"], summary["done"], summary["total"]) == (4, 12, 12)
    twelve = _rows(db)
    assert twelve[:8] == eight  # the 8 trials kept as they were, results and all
    # The 4 new ones are the next designs of the sample, with their own search draws.
    expected = resolve(study)
    assert [json.loads(r[3]) for r in twelve] == [t.record.to_dict() for t in expected.trials]
    assert [json.loads(r[7]) for r in twelve] == [dict(t.recipe_fields) for t in expected.trials]
    # n never falls, and nothing else may change.
    for change, message in (
        ({"n": 10}, "holds 12 trials; n may rise, never fall"),
        ({"n": 12, "seed": 1}, "different study file"),
        ({"n": 14, "seed": 1}, "different study file"),
    ):
        write_study(study, **{**FAST, **change})
        proc = run_cli("study", "run", str(study), "--db", str(db), cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert _rows(db) == twelve
