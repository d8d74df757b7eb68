"""The study database's schema and a read-only reader (sqlite3 only, no torch).

A study database is one SQLite file (WAL mode) with two tables: ``meta`` (key/value text:
schema version, the study file's canonical hash, its name and canonical content) and
``trials`` (one row per sampled design: the `sample` record, the sampled recipe fields, the
state machine pending -> running -> done | failed | stopped (ended early by the study's
scheduler), the attempt counter, the measured results and the `diverged` flag).
`regnet-space study run` writes it (the driver alone); `study status`, `study export` and
`analyze` read it here, while a run may still be writing. Schema 1 (before stopped trials
and the flag) is read as well: its `diverged` is unknown (None) until a run upgrades it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..infra.errors import RegNetSpaceError
from ..infra.reading import open_regular

SCHEMA_VERSION = 2
META_TABLE = "meta"
TRIALS_TABLE = "trials"
STATES = ("pending", "running", "done", "failed", "stopped")
SQLITE_MAGIC = b"SQLite format 3\x00"

# Columns of the trials table, in order (the reader and the writer share this list).
TRIAL_COLUMNS = (
    "id",  # sample id (position among the accepted designs)
    "name",  # design name
    "spec",  # JSON: spec fields of the design
    "record",  # JSON: the `sample` record (spec fields, input_size, plan, counts)
    "flops",
    "params",
    "acts",
    "recipe",  # JSON: recipe fields sampled for this trial ({} without `search`)
    "state",  # pending | running | done | failed
    "attempts",  # finished attempts (done or failed); an interrupted one does not count
    "error",  # final top-1 test error, percent
    "epochs",
    "curve",  # JSON list of per-epoch metrics
    "train_seconds",
    "images_per_second",
    "peak_memory_bytes",
    "device",
    "host",
    "synthetic",  # 1 when trained on synthetic data
    "message",  # why the last attempt failed
    "started_at",  # unix time the last attempt started
    "finished_at",  # unix time the last attempt finished
    "diverged",  # 1 when its training loss blew up (DIVERGED_FACTOR), 0 if not, NULL unknown
)
# A finished trial diverged when some epoch's mean training loss exceeds this many times
# ln(classes): the loss of the uniform guess every trial starts at (small initial logits).
DIVERGED_FACTOR = 2.0

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS {TRIALS_TABLE} (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        record TEXT NOT NULL,
        flops INTEGER NOT NULL,
        params INTEGER NOT NULL,
        acts INTEGER NOT NULL,
        recipe TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
        attempts INTEGER NOT NULL DEFAULT 0,
        error REAL,
        epochs INTEGER,
        curve TEXT,
        train_seconds REAL,
        images_per_second REAL,
        peak_memory_bytes INTEGER,
        device TEXT,
        host TEXT,
        synthetic INTEGER,
        message TEXT,
        started_at REAL,
        finished_at REAL,
        diverged INTEGER
    )""",
)

RECIPE_PREFIX = "recipe."  # export columns of the recipe fields a study's `search` drew


class StudyDbError(RegNetSpaceError, ValueError):
    """A file that is not a readable study database."""


@dataclass(frozen=True)
class Trial:
    """One row of the trials table, JSON columns decoded."""

    id: int
    name: str
    spec: Mapping[str, Any]
    record: Mapping[str, Any]
    flops: int
    params: int
    acts: int
    recipe: Mapping[str, Any]
    state: str
    attempts: int
    error: float | None
    epochs: int | None
    curve: tuple[Mapping[str, Any], ...]
    train_seconds: float | None
    images_per_second: float | None
    peak_memory_bytes: int | None
    device: str | None
    host: str | None
    synthetic: bool
    message: str | None
    started_at: float | None
    finished_at: float | None
    diverged: bool | None = None  # None: not judged (not finished, or schema 1)

    def export_row(self) -> dict[str, Any]:
        """Every `sample` record field (id included), the sampled recipe fields, the results."""
        row: dict[str, Any] = dict(self.record)
        row.update({f"{RECIPE_PREFIX}{k}": v for k, v in self.recipe.items()})
        row.update(
            error=self.error,
            epochs=self.epochs,
            train_seconds=self.train_seconds,
            images_per_second=self.images_per_second,
            state=self.state,
            attempts=self.attempts,
            peak_memory_bytes=self.peak_memory_bytes,
            device=self.device,
            host=self.host,
            synthetic=self.synthetic,
            message=self.message,
            diverged=self.diverged,
            curve=[dict(c) for c in self.curve],
        )
        return row


@dataclass(frozen=True)
class StudyDb:
    """A study database read at one moment: its meta table and every trial in id order."""

    path: Path
    meta: Mapping[str, str]
    trials: tuple[Trial, ...]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.stem)

    def counts(self) -> dict[str, int]:
        """Trials per state, every state present."""
        out = dict.fromkeys(STATES, 0)
        for t in self.trials:
            out[t.state] += 1
        return out

    def done(self) -> list[Trial]:
        """Finished trials with a finite error, best (lowest error) first, ties by id."""
        ok = [t for t in self.trials if t.state == "done" and _finite(t.error)]
        return sorted(ok, key=lambda t: (t.error, t.id))

    def diverged(self) -> list[Trial]:
        """Trials (done or stopped) flagged diverged, in id order."""
        return [t for t in self.trials if t.diverged]


def is_diverged(curve: Iterable[Mapping[str, Any]], classes: int) -> bool:
    """Whether some epoch's mean training loss exceeds DIVERGED_FACTOR x ln(classes)."""
    if classes < 2:
        return False
    limit = DIVERGED_FACTOR * math.log(classes)
    return any(float(c["train_loss"]) > limit for c in curve)


def diverged_rule(classes: int) -> str:
    """The divergence rule in words, for messages and reports."""
    limit = DIVERGED_FACTOR * math.log(max(classes, 2))
    return f"mean training loss above {DIVERGED_FACTOR:g} ln {classes} = {limit:.2f} in an epoch"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def is_study_db(path: str | Path) -> bool:
    """Whether a regular file starts with SQLite's header (cheap; says nothing about its tables).

    Opened as every input is (`open_regular`): a FIFO or device is no database and never blocks.
    """
    try:
        with open_regular(Path(path), "study database") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except (OSError, RegNetSpaceError):
        return False


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A connection that never creates the file or changes it (query_only).

    Opened read-write when the file allows it, so that closing the last connection tidies
    the WAL files away as SQLite does; else strictly read-only (a read-only share). Where not
    even that works (a WAL database on a read-only file system, where SQLite cannot create its
    `-shm` file), the file is opened as immutable: nothing can be writing it there, so reading
    it without locks is exact, unless a `-wal` file holds changes not yet in the database.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise StudyDbError(f"{p}: no such file") from None
    except OSError as exc:
        raise StudyDbError(f"{p}: cannot read: {(exc.strerror or str(exc)).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StudyDbError(f"{p}: is a directory, expected a study database")
    if not is_study_db(p):
        raise StudyDbError(f"{p}: not a study database (not an SQLite file)")
    uri = p.resolve().as_uri()
    modes = ["mode=rw", "mode=ro"]
    wal = Path(f"{p}-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    if not pending:
        modes.append("mode=ro&immutable=1")
    for mode in modes:
        try:
            con = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=30)
        except sqlite3.Error as exc:
            error = exc
            continue
        try:
            con.execute("PRAGMA query_only = ON")
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.Error as exc:
            con.close()
            error = exc
    hint = f" ({wal.name} holds changes SQLite reads only with a -shm file beside it)"
    raise StudyDbError(f"{p}: cannot open: {error}" + (hint if pending else ""))


def read_meta(con: sqlite3.Connection, where: str) -> dict[str, str]:
    """The meta table; refuses a file without the study tables or of a newer schema."""
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{where}: not a study database ({exc})") from None
    if not {META_TABLE, TRIALS_TABLE} <= tables:
        raise StudyDbError(f"{where}: not a study database (no {TRIALS_TABLE} table)")
    meta = dict(con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    version = meta.get("schema_version", "")
    if not version.isdigit() or int(version) > SCHEMA_VERSION:
        raise StudyDbError(
            f"{where}: study database schema {version or '?'} is not supported "
            f"(this version reads {SCHEMA_VERSION})"
        )
    return meta


def _json(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


def trial_from_row(row: tuple[Any, ...]) -> Trial:
    """A Trial from a row of TRIAL_COLUMNS."""
    d = dict(zip(TRIAL_COLUMNS, row, strict=True))
    curve = tuple(map(MappingProxyType, _json(d["curve"], [])))  # fresh dicts from json
    return Trial(
        id=int(d["id"]),
        name=d["name"],
        spec=MappingProxyType(_json(d["spec"], {})),
        record=MappingProxyType(_json(d["record"], {})),
        flops=int(d["flops"]),
        params=int(d["params"]),
        acts=int(d["acts"]),
        recipe=MappingProxyType(_json(d["recipe"], {})),
        state=d["state"],
        attempts=int(d["attempts"]),
        error=d["error"],
        epochs=d["epochs"],
        curve=curve,
        train_seconds=d["train_seconds"],
        images_per_second=d["images_per_second"],
        peak_memory_bytes=d["peak_memory_bytes"],
        device=d["device"],
        host=d["host"],
        synthetic=bool(d["synthetic"]),
        message=d["message"],
        started_at=d["started_at"],
        finished_at=d["finished_at"],
        diverged=None if d["diverged"] is None else bool(d["diverged"]),
    )


def trial_columns(con: sqlite3.Connection) -> set[str]:
    """The columns the trials table has (schema 1 lacks `diverged`)."""
    return {r[1] for r in con.execute(f"PRAGMA table_info({TRIALS_TABLE})")}


def trial_select(con: sqlite3.Connection, columns: Iterable[str] = TRIAL_COLUMNS) -> str:
    """Columns of the trials table for a SELECT, NULL for those an older schema lacks."""
    have = trial_columns(con)
    return ", ".join(c if c in have else f"NULL AS {c}" for c in columns)


def scheduler_of(meta: Mapping[str, str]) -> dict[str, Any]:
    """The study's scheduler as recorded ({"kind": "none"} when it has none)."""
    try:
        study = json.loads(meta.get("study", ""))
    except ValueError:
        study = None
    config = study.get("scheduler") if isinstance(study, dict) else None
    return dict(config) if isinstance(config, dict) else {"kind": "none"}


def scheduler_text(config: Mapping[str, Any]) -> str:
    """A scheduler in words: "asha (grace_epochs 1, reduction_factor 4)"."""
    rest = ", ".join(f"{k} {v}" for k, v in config.items() if k != "kind")
    return f"{config.get('kind', '?')}" + (f" ({rest})" if rest else "")


def read_study_db(path: str | Path) -> StudyDb:
    """Every trial of a study database, read in one transaction (a consistent snapshot)."""
    p = Path(path)
    con = connect_readonly(p)
    try:
        con.execute("BEGIN")
        meta = read_meta(con, str(p))
        rows = con.execute(f"SELECT {trial_select(con)} FROM {TRIALS_TABLE} ORDER BY id").fetchall()
        con.execute("COMMIT")
        trials = tuple(trial_from_row(r) for r in rows)
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
    except (json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        raise StudyDbError(f"{p}: damaged study database: {exc}") from None
    finally:
        con.close()
    return StudyDb(p, MappingProxyType(meta), trials)


def analysis_records(
    db: StudyDb, allow_synthetic: bool = False, include_stopped: bool = False
) -> list[dict[str, Any]]:
    """Records for analysis: the finished trials' export rows (sample record + results);
    trials a scheduler stopped early (not trained to the end) only with include_stopped.

    Synthetic-data results measure speed, not accuracy: refused unless allowed.
    """
    states = ("done", "stopped") if include_stopped else ("done",)
    done = [t for t in db.trials if t.state in states and _finite(t.error)]
    if not done:
        counts = ", ".join(f"{v} {k}" for k, v in db.counts().items() if v)
        also = " (--include-stopped takes the stopped ones)" if db.counts()["stopped"] else ""
        raise StudyDbError(
            f"{db.path}: no finished trials to analyze ({counts or 'no trials'}){also}"
        )
    synthetic = sum(t.synthetic for t in done)
    if synthetic and not allow_synthetic:
        raise StudyDbError(
            f"{db.path}: {synthetic} trial(s) trained on synthetic data (speed runs, not "
            "accuracy); analyze them with --allow-synthetic"
        )
    rows = []
    for t in done:
        row = t.export_row()
        row.pop("curve")
        row.setdefault("space", db.name)
        rows.append(row)
    return rows
