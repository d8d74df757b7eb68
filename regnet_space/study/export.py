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
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
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
# The curve's compact JSON, NULL when damaged: an array iff it starts with "[" (no spaces).
_COMPACT_CURVE = "CASE WHEN json_valid(curve) THEN json(curve) END"


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
        sql = (
            "SELECT id, json_valid(record) AND json_valid(recipe), curve IS NULL, record, "
            f"recipe, {{}}, {trial_select(con, RESULTS)} FROM {TRIALS_TABLE} ORDER BY id"
        )
        try:
            table = _CsvTable.read(p, con.execute(sql.format("json(curve)")))
        except sqlite3.OperationalError:  # json() refuses a damaged curve: found by this form
            table = _CsvTable.read(p, con.execute(sql.format(_COMPACT_CURVE)))
        con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
    finally:
        con.close()
    return "\n".join([csv_line(table.header())[:-1], *_lines(table.columns()), ""])


_CHUNK = 128  # trials decoded at a time: few live objects, so the garbage collector idles


@dataclass
class _CsvTable:
    """The export's fields column by column, filled a chunk of trials at a time."""

    records: dict[str, list[str]] = field(default_factory=dict)
    recipes: dict[str, list[str]] = field(default_factory=dict)
    results: list[list[str]] = field(default_factory=lambda: [[] for _ in RESULTS])
    curves: list[str] = field(default_factory=list)
    rows: int = 0

    @classmethod
    def read(cls, p: Path, cursor: sqlite3.Cursor) -> _CsvTable:
        """Every row of the cursor (id, JSON valid, curve NULL, record, recipe, compact curve,
        RESULTS); a trial whose JSON is damaged is one line. SQLite checks that the texts are
        JSON, this side what they hold (objects; an array: a compact curve starts with "["),
        so that SQLite parses each text once."""
        table = cls()
        while chunk := cursor.fetchmany(_CHUNK):
            ids, valid, no_curve, record_texts, recipe_texts, curves, *results = zip(
                *chunk, strict=True
            )
            ok = [
                bool(v and (n or (c is not None and c[:1] == "[")))
                for v, n, c in zip(valid, no_curve, curves, strict=True)
            ]
            good = ok.index(False) if not all(ok) else len(ok)  # rows before a damaged one
            texts = set(map(type, record_texts[:good])) | set(map(type, recipe_texts[:good]))
            if texts - {str}:
                good = 0
            records = [json.loads(r) for r in record_texts[:good]]
            recipes = [{} if r == "{}" else json.loads(r) for r in recipe_texts[:good]]
            if (set(map(type, records)) | set(map(type, recipes))) - {dict}:
                good = min(
                    i
                    for i, (r, q) in enumerate(zip(records, recipes, strict=True))
                    if type(r) is not dict or type(q) is not dict
                )
            if good < len(ok):
                raise StudyDbError(f"{p}: damaged study database: trial {ids[good]}'s JSON columns")
            table._add(records, recipes, curves, results)
        return table

    def _add(
        self,
        records: list[dict[str, Any]],
        recipes: list[dict[str, Any]],
        curves: tuple[str | None, ...],
        results: list[tuple[Any, ...]],
    ) -> None:
        for columns, rows in ((self.records, records), (self.recipes, recipes)):
            last: tuple[str, ...] = ()
            for row in rows:
                if tuple(row) != last:  # the same keys row after row in a study: checked once
                    last = tuple(row)
                    for key in last:
                        if key not in columns:  # absent from the rows before: empty there
                            columns[key] = [""] * self.rows
            for key, column in columns.items():
                column += _fields([row.get(key) for row in rows])
        by_name = dict(zip(RESULTS, results, strict=True))
        by_name["synthetic"] = tuple(bool(v) for v in by_name["synthetic"])
        by_name["diverged"] = tuple(None if v is None else bool(v) for v in by_name["diverged"])
        for column, values in zip(self.results, by_name.values(), strict=True):
            column += _fields(values)
        self.curves += _fields([c or "[]" for c in curves])
        self.rows += len(curves)

    def header(self) -> list[str]:
        """The column names."""
        return [*self.records, *(RECIPE_PREFIX + k for k in self.recipes), *RESULTS, "curve"]

    def columns(self) -> list[list[str]]:
        """The fields, column by column, in the header's order."""
        return [*self.records.values(), *self.recipes.values(), *self.results, self.curves]


def csv_rows(columns: list[Sequence[Any]]) -> str:
    """The CSV rows of these columns of values read from JSON: csv_line of each row's cells
    (`_cell`), made column by column."""
    return "\n".join([*_lines(list(map(_fields, columns))), ""])


def _lines(columns: list[list[str]]) -> list[str]:
    """The rows of these columns of fields, without newlines, as csv_line writes them."""
    lines = list(map(",".join, zip(*columns, strict=True)))
    for i, line in enumerate(lines):
        if "\r" in line or not line:  # csv_line gives these rows to csv.writer
            safe = [_unquoted(column[i]) for column in columns]
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(safe)
            lines[i] = buf.getvalue()[:-1]
    return lines


def _unquoted(text: str) -> str:
    """A field's cell (a quoted field starts with a quote; a bare one holds none)."""
    return text[1:-1].replace('""', '"') if text[:1] == '"' else text


_NUMBERS = {int, float, type(None)}
_STRINGS = {str, type(None)}
_TEXTS = {str, bool, type(None)}
_PREFIXED = set("=+-@\t\r")  # csv_cell's
_QUOTED = re.compile('[",\n\r]')  # csv_line quotes or hands to csv.writer
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_NOT_FINITE = {"inf", "-inf", "nan"}


def _fields(column: list[Any] | tuple[Any, ...]) -> list[str]:
    """Each value's `_field`; a column of numbers, of texts or of integer lists at C speed."""
    kinds = set(map(type, column))
    if kinds <= _NUMBERS:
        # A finite float's repr and an int's str are numbers: never quoted nor prefixed.
        if type(None) in kinds:
            out = ["" if v is None else repr(v) for v in column]
        else:
            out = list(map(repr, column))
        if _NOT_FINITE.isdisjoint(out):
            return out
    elif kinds <= _STRINGS:
        out = ["" if v is None else v for v in column]
        if _PREFIXED.isdisjoint({t[:1] for t in out}) and not any(map(_QUOTED.search, out)):
            return out
        # csv_cell's prefix is rare: the quoting of the rest spelled out (no call per text).
        return [
            _field(t)
            if t[:1] in _PREFIXED
            else ('"' + t.replace('"', '""') + '"' if '"' in t or "," in t or "\n" in t else t)
            for t in out
        ]
    elif kinds == {list} and set(map(type, chain.from_iterable(column))) <= {int}:
        # One encoding of the whole column, split between its flat lists.
        parts = _COMPACT(column)[2:-2].split("],[")
        return ['"[' + t + ']"' if "," in t else "[" + t + "]" for t in parts]
    if kinds <= _TEXTS:  # no two of these kinds compare equal: one field per distinct value
        distinct = {v: _field(v) for v in dict.fromkeys(column)}
        return list(map(distinct.__getitem__, column))
    return list(map(_field, column))


def _field(value: Any) -> str:
    """A value's CSV field as csv_line writes it: its `_cell`, made safe, quoted if needed."""
    c = csv_cell(value if type(value) is str else _cell(value))
    return '"' + c.replace('"', '""') + '"' if ('"' in c or "," in c or "\n" in c) else c


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
