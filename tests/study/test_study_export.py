"""`study export`'s fast paths write exactly what decoding every trial would: the JSONL line
of each trial's export_row, and the CSV csv.writer makes of those rows."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from study_helpers import TINY_RECIPE, write_study

from regnet_space.analysis.studydb import StudyDbError, read_study_db
from regnet_space.cli import main
from regnet_space.infra.text import csv_cell
from regnet_space.study.export import csv_line, csv_text, jsonl_lines


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study with searched recipe fields; one trial failed, one left pending."""
    folder = tmp_path_factory.mktemp("export")
    recipe = {**TINY_RECIPE, "train_size": 8, "test_size": 8, "batch_size": 128}
    search = {"lr": {"values": [0.2, 0.4]}, "label_smoothing": {"values": [0.0, 0.1]}}
    study = write_study(folder / "e.yaml", n=4, recipe=recipe, search=search, keep="none")
    db = folder / "e.db"
    assert main(["study", "run", str(study), "--db", str(db), "--quiet"]) == 0
    con = sqlite3.connect(db)
    con.execute(
        "UPDATE trials SET state = 'failed', message = 'a, \"quoted\"\nmessage' WHERE id = 1"
    )
    con.execute("UPDATE trials SET state = 'pending', error = NULL, curve = NULL WHERE id = 2")
    con.commit()
    con.close()
    return db


def _reference_csv(rows: list[dict]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return ""
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in columns])
    for r in rows:
        writer.writerow([csv_cell(cell(r.get(c))) for c in columns])
    return buf.getvalue()


def test_the_fast_export_is_the_decoded_export(searched: Path) -> None:
    rows = [t.export_row() for t in read_study_db(searched).trials]
    assert "".join(jsonl_lines(searched)) == "".join(json.dumps(r) + "\n" for r in rows)
    assert csv_text(searched) == _reference_csv(rows)
    assert any("recipe.base_lr" in r for r in rows)


@given(st.lists(st.text(), min_size=1, max_size=6))
def test_csv_line_is_what_csv_writer_writes(cells: list[str]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([csv_cell(c) for c in cells])
    assert csv_line(cells) == buf.getvalue()


def test_a_damaged_curve_is_one_line(searched: Path, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(searched.read_bytes())
    con = sqlite3.connect(db)
    con.execute("UPDATE trials SET curve = '[{\"epoch\": 1,' WHERE id = 3")
    con.commit()
    con.close()
    for export in (lambda: "".join(jsonl_lines(db)), lambda: csv_text(db)):
        with pytest.raises(StudyDbError, match="damaged study database: trial 3's JSON"):
            export()
