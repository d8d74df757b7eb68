"""`study export`: every trial as a JSONL line or a CSV row, fast enough for 100,000 trials.

A row is `analysis.studydb.Trial.export_row()`: the `sample` record's fields, the sampled
recipe fields (recipe.NAME), then the results and the curve. The database holds the record
and the curve as the JSON text this side wrote, so a JSONL line is spliced from those texts
(each checked by SQLite's JSON functions to be an object or an array) rather than decoded
and encoded again, and a CSV row takes the curve's compact JSON from SQLite. No torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..analysis.studydb import (
    RECIPE_PREFIX,
    TRIALS_TABLE,
    StudyDbError,
    connect_readonly,
    read_meta,
    trial_select,
)
from ..infra.text import csv_cell

RESULTS = ("error", "epochs", "train_seconds", "images_per_second", "state", "attempts",
           "peak_memory_bytes", "device", "host", "synthetic", "message",
           "diverged")  # fmt: skip


def _is(column: str, kind: str) -> str:
    # CASE: SQLite may evaluate json_type before json_valid in an AND (then fail on bad text).
    return f"(CASE WHEN json_valid({column}) THEN json_type({column}) END) = '{kind}'"


_CHECKED = (
    f"{_is('record', 'object')} AND {_is('recipe', 'object')} "
    f"AND (curve IS NULL OR {_is('curve', 'array')})"
)


def _rows(con: sqlite3.Connection, p: Path, columns: str) -> Iterator[tuple[Any, ...]]:
    """Every trial's `columns`, id order; a trial whose JSON is damaged is one line."""
    sql = f"SELECT id, {_CHECKED}, {columns} FROM {TRIALS_TABLE} ORDER BY id"
    for row in con.execute(sql):
        if not row[1]:
            raise StudyDbError(f"{p}: damaged study database: trial {row[0]}'s JSON columns")
        yield row[2:]


def _results(values: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(RESULTS, values, strict=True))
    out["synthetic"] = bool(out["synthetic"])
    out["diverged"] = None if out["diverged"] is None else bool(out["diverged"])
    return out


def jsonl_lines(path: str | Path) -> Iterator[str]:
    """The export's JSONL lines, one per trial (each ends with a newline)."""
    p = Path(path)
    con = connect_readonly(p)
    try:
        con.execute("BEGIN")
        read_meta(con, str(p))
        for record, recipe, curve, *values in _rows(
            con, p, f"record, recipe, curve, {trial_select(con, RESULTS)}"
        ):
            body = record.strip()[1:-1].strip()
            parts = [body] if body else []
            if recipe.strip() != "{}":
                fields = {RECIPE_PREFIX + k: v for k, v in json.loads(recipe).items()}
                parts.append(json.dumps(fields)[1:-1])
            parts.append(json.dumps(_results(tuple(values)))[1:-1])
            parts.append(f'"curve": {curve if curve is not None else "[]"}')
            yield "{" + ", ".join(parts) + "}\n"
        con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
    finally:
        con.close()


def _cell(value: Any) -> str:
    """A value read from JSON as a CSV cell: text as is, None empty, the rest compact JSON
    (the common types written directly: json.dumps costs more than the rest of a row)."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    if kind is list and all(type(v) is int for v in value):
        return "[" + ",".join(map(str, value)) + "]"
    return json.dumps(value, separators=(",", ":"))


def csv_text(path: str | Path) -> str:
    """The export as CSV: one column per key of any row (in the order rows give them);
    cells spreadsheets show as text."""
    p = Path(path)
    con = connect_readonly(p)
    try:
        con.execute("BEGIN")
        read_meta(con, str(p))
        curve = "CASE WHEN json_valid(curve) THEN json(curve) END"
        columns = f"record, recipe, {curve}, {trial_select(con, RESULTS)}"
        rows = [
            (json.loads(record), json.loads(recipe), curve, values)
            for record, recipe, curve, *values in _rows(con, p, columns)
        ]
        con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
    finally:
        con.close()
    record_keys: dict[str, None] = {}
    recipe_keys: dict[str, None] = {}
    last: tuple[Any, ...] = ()
    for record, recipe, _, _ in rows:
        if tuple(record) != last:  # the same keys row after row in a study: checked once
            last = tuple(record)
            record_keys.update(dict.fromkeys(last))
        recipe_keys.update(dict.fromkeys(recipe))
    header = [*record_keys, *(RECIPE_PREFIX + k for k in recipe_keys), *RESULTS, "curve"]
    lines = [csv_line(header)]
    for record, recipe, curve, values in rows:
        cells = [_cell(record.get(k)) for k in record_keys]
        cells += [_cell(recipe.get(k)) for k in recipe_keys]
        cells += [_cell(v) for v in _results(tuple(values)).values()]
        cells.append(curve or "[]")
        lines.append(csv_line(cells))
    return "".join(lines)


def csv_line(cells: list[str]) -> str:
    """One CSV row as csv.writer writes it (minimal quoting, "\\n" ends it), each cell made
    safe for spreadsheets first; joined here because csv.writer scans a long cell (a curve)
    one character at a time. A row with a carriage return goes to csv.writer itself (Python
    versions differ on quoting it)."""
    safe = [csv_cell(c) for c in cells]
    if any("\r" in c for c in safe) or safe == [""]:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(safe)
        return buf.getvalue()
    out = [
        '"' + c.replace('"', '""') + '"' if ('"' in c or "," in c or "\n" in c) else c for c in safe
    ]
    return ",".join(out) + "\n"
