"""`study export`'s CSV made column by column and chunk by chunk is, byte for byte, csv_line
of each row's cells: for columns of one kind (the fast paths) and of mixed kinds, with values
that need quoting, a spreadsheet prefix, csv.writer (a carriage return) or JSON (non-finite
floats, bools); keys first seen in a later chunk; the first damaged trial named."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from study_helpers import write_study

from regnet_space.analysis.studydb import RECIPE_PREFIX, StudyDbError, read_study_db
from regnet_space.study.database import StudyDatabase
from regnet_space.study.export import RESULTS, _cell, csv_line, csv_rows, csv_text
from regnet_space.study.studyfile import resolve

TEXT = st.one_of(
    st.sampled_from(["", "x", "-5", "-x", "=1+1", "@a", "a,b", 'say "hi"', "a\nb", "a\rb", "\tx"]),
    st.text(max_size=8),
)
INTS = st.lists(st.integers(-(10**20), 10**20), max_size=4)
VALUE: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    INTS,
    st.lists(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), TEXT), max_size=3),
    st.dictionaries(TEXT, st.integers(), max_size=2),
)
# Columns of one kind take the fast paths; None mixes into numbers and texts.
KINDS = [
    st.one_of(st.none(), st.integers(-(10**20), 10**20), st.floats()),
    st.one_of(st.none(), TEXT),
    st.booleans(),
    INTS,
    VALUE,
]


@st.composite
def tables(draw: st.DrawFn) -> list[list[Any]]:
    rows = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    return [draw(st.lists(kind, min_size=rows, max_size=rows)) for kind in kinds]


@settings(max_examples=400)
@given(tables())
def test_columns_are_written_as_rows_would_be(columns: list[list[Any]]) -> None:
    rows = zip(*columns, strict=True)
    assert csv_rows(columns) == "".join(csv_line([_cell(v) for v in row]) for row in rows)


def test_integer_lists_split_exactly() -> None:
    columns = [[[], [1], [2, -3], [], [40, 5, 6]], [1.5, None, -0.0, 1e300, 2]]
    rows = zip(*columns, strict=True)
    assert csv_rows(columns) == "".join(csv_line([_cell(v) for v in row]) for row in rows)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study database of 300 trials (more than a chunk) filled through the driver's layer."""
    folder = tmp_path_factory.mktemp("columns")
    study = resolve(write_study(folder / "s.yaml", n=300, keep="none"))
    db = folder / "s.db"
    curve = [{"epoch": 1, "train_loss": 2.0, "test_error": 50.0, "lr": 0.1, "seconds": 1.0}]
    result = {"error": 50.0, "epochs": 1, "curve": curve, "train_seconds": 1.0,
              "images_per_second": 9.0, "peak_memory_bytes": 1, "device": "cpu",
              "host": "=h,1", "synthetic": True}  # fmt: skip
    with StudyDatabase.open(db, study) as opened:
        opened.record_results((t.record.id, result) for t in study.trials[5:])
    return db


def _reference(db: Path) -> str:
    rows = [t.export_row() for t in read_study_db(db).trials]
    # The export's columns: the records' keys (first seen first), the recipes', the results.
    keys = dict.fromkeys(k for r in rows for k in r if k not in RESULTS and k != "curve")
    records = [k for k in keys if not k.startswith(RECIPE_PREFIX)]
    recipes = [k for k in keys if k.startswith(RECIPE_PREFIX)]
    columns = [*records, *recipes, *RESULTS, "curve"]
    lines = [csv_line(columns)]
    lines += [csv_line([_cell(r.get(c)) for c in columns]) for r in rows]
    return "".join(lines)


def test_chunks_with_new_keys_are_the_decoded_export(filled: Path, tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    db.write_bytes(filled.read_bytes())
    con = sqlite3.connect(db)
    # A key first seen in a later chunk, one absent from another row, a carriage return.
    con.execute("UPDATE trials SET record = json_set(record, '$.late', 'x') WHERE id = 250")
    con.execute("UPDATE trials SET record = json_remove(record, '$.q') WHERE id = 3")
    con.execute("UPDATE trials SET message = 'a\rb' WHERE id = 200")
    con.commit()
    con.close()
    assert csv_text(db) == _reference(db)
    assert csv_text(filled) == _reference(filled)


@pytest.mark.parametrize(
    ("column", "text"),
    [("record", "[1]"), ("record", "{"), ("recipe", '"x"'), ("curve", '{"a": 1}'), ("curve", "[")],
)
def test_the_first_damaged_trial_is_named(
    filled: Path, tmp_path: Path, column: str, text: str
) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(filled.read_bytes())
    con = sqlite3.connect(db)
    con.execute(f"UPDATE trials SET {column} = ? WHERE id IN (170, 290)", (text,))
    con.execute("UPDATE trials SET curve = '[' WHERE id = 280")
    con.commit()
    con.close()
    with pytest.raises(StudyDbError, match="damaged study database: trial 170's JSON"):
        csv_text(db)
