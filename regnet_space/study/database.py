"""The study database, written side: create it once, then one transaction per state change.

Only the driver writes (workers return results to it). Every change of a trial (started,
finished, failed) is its own committed transaction in WAL mode with synchronous=FULL, so a
Ctrl-C or kill -9 of the driver at any moment loses no finished trial and leaves the file
readable. The file is built beside its target and linked into place only when complete,
and one driver at a time holds it (an advisory lock the kernel drops if the driver dies).
Never imports torch: the schema and the reader live in `analysis.studydb`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..analysis.studydb import (
    META_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
    TRIAL_COLUMNS,
    TRIALS_TABLE,
    StudyDbError,
    Trial,
    connect_readonly,
    read_meta,
    trial_from_row,
)
from ..core.errors import OutputError
from ..core.io import umask_mode
from .errors import StudyError
from .studyfile import ResolvedStudy

try:  # advisory locking; absent on Windows, where one driver per database is up to the user
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def _insert_trials(con: sqlite3.Connection, study: ResolvedStudy) -> None:
    rows = []
    for t in study.trials:
        r = t.record
        rows.append(
            (
                r.id,
                r.spec["name"],
                json.dumps(r.to_dict_spec()),
                json.dumps(r.to_dict()),
                r.flops,
                r.params,
                r.acts,
                json.dumps(dict(t.recipe_fields)),
                "pending",
                0,
            )
        )
    cols = "id, name, spec, record, flops, params, acts, recipe, state, attempts"
    con.executemany(f"INSERT INTO {TRIALS_TABLE} ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)


def _create(path: Path, study: ResolvedStudy) -> None:
    """Build the complete database beside `path`, then link it into place (never half made)."""
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: no such directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        con = _connect(tmp)
        try:
            con.execute("BEGIN")
            for statement in SCHEMA:
                con.execute(statement)
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "study_hash": study.digest,
                "name": study.name,
                "study": study.canonical,
                "study_file": str(study.path),
                "created_at": repr(time.time()),
            }
            con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", meta.items())
            _insert_trials(con, study)
            con.execute("COMMIT")
        finally:
            con.close()  # checkpoints the WAL into the file and removes it
        os.chmod(tmp, umask_mode())
        # Exclusive: if another driver created it meanwhile, opening it checks it is ours.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: rename, unless one appeared
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{tmp}{suffix}")


def _check_study(meta: Mapping[str, str], p: Path, study: ResolvedStudy) -> None:
    if meta.get("study_hash") != study.digest:
        raise StudyError(
            f"{p}: holds study {meta.get('name', '?')!r} made from a different study file "
            "(space, n, seed, constraints, recipe, search or data differ); use another --db"
        )


class StudyDatabase:
    """An open study database held by this driver; every method commits before returning."""

    def __init__(self, path: Path, con: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._con = con
        self._lock_fd = lock_fd

    @staticmethod
    def runnable_count(path: str | Path, study: ResolvedStudy, retries: int) -> int:
        """Trials a run would start: all of them for a new database; checks an existing one."""
        p = Path(path)
        if p.is_dir():
            raise OutputError(f"{p}: is a directory, expected a study database file")
        if not p.exists():
            if not p.parent.is_dir():
                raise OutputError(f"{p.parent}: no such directory")
            return len(study.trials)
        StudyDatabase._unlock(StudyDatabase._lock(p))  # held by a running driver: refuse now
        ro = connect_readonly(p)
        try:
            _check_study(read_meta(ro, str(p)), p, study)
            row = ro.execute(
                f"SELECT COUNT(*) FROM {TRIALS_TABLE} WHERE state IN ('pending', 'running') "
                "OR (state = 'failed' AND attempts <= ?)",
                (retries,),
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
        finally:
            ro.close()
        return int(row[0])

    @classmethod
    def open(cls, path: str | Path, study: ResolvedStudy) -> StudyDatabase:
        """Create the database for `study`, or open it to resume; refuse another study's."""
        p = Path(path)
        if p.is_dir():
            raise OutputError(f"{p}: is a directory, expected a study database file")
        if not p.exists():
            _create(p, study)
        ro = connect_readonly(p)
        try:
            _check_study(read_meta(ro, str(p)), p, study)
        finally:
            ro.close()
        lock_fd = cls._lock(p)
        try:
            con = _connect(p)
        except sqlite3.Error as exc:
            cls._unlock(lock_fd)
            raise StudyDbError(f"{p}: cannot open: {exc}") from None
        return cls(p, con, lock_fd)

    @staticmethod
    def _lock(p: Path) -> int | None:
        if fcntl is None:
            return None
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StudyError(f"{p}: another `study run` is using this database") from None
        return fd

    @staticmethod
    def _unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def close(self) -> None:
        """Close the connection and drop the lock."""
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
        self._unlock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> StudyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def trials(self) -> list[Trial]:
        """Every trial, id order."""
        rows = self._con.execute(
            f"SELECT {', '.join(TRIAL_COLUMNS)} FROM {TRIALS_TABLE} ORDER BY id"
        ).fetchall()
        return [trial_from_row(r) for r in rows]

    def trial(self, trial_id: int) -> Trial:
        """One trial by id."""
        row = self._con.execute(
            f"SELECT {', '.join(TRIAL_COLUMNS)} FROM {TRIALS_TABLE} WHERE id = ?", (trial_id,)
        ).fetchone()
        return trial_from_row(row)

    def runnable(self, retries: int) -> list[int]:
        """Trials to run: pending, running (interrupted) and failed with retries left."""
        rows = self._con.execute(
            f"SELECT id FROM {TRIALS_TABLE} WHERE state IN ('pending', 'running') "
            "OR (state = 'failed' AND attempts <= ?) ORDER BY id",
            (retries,),
        ).fetchall()
        return [r[0] for r in rows]

    # -- writing: one committed transaction each -----------------------------------------------

    def _write(self, sql: str, params: Iterable[Any]) -> int:
        cur = self._con.execute(sql, tuple(params))
        return cur.rowcount

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Record facts about the current run (executor, parallelism) for `status`."""
        self._con.execute("BEGIN IMMEDIATE")
        self._con.executemany(
            f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", list(values.items())
        )
        self._con.execute("COMMIT")

    def mark_running(self, trial_id: int) -> None:
        """A trial was handed to a worker."""
        self._write(
            f"UPDATE {TRIALS_TABLE} SET state = 'running', started_at = ?, finished_at = NULL "
            "WHERE id = ? AND state != 'done'",
            (time.time(), trial_id),
        )

    def finish(self, trial_id: int, result: Mapping[str, Any]) -> bool:
        """Store a trial's result (done); False when the trial was not running (ignored)."""
        n = self._write(
            f"UPDATE {TRIALS_TABLE} SET state = 'done', attempts = attempts + 1, error = ?, "
            "epochs = ?, curve = ?, train_seconds = ?, images_per_second = ?, "
            "peak_memory_bytes = ?, device = ?, host = ?, synthetic = ?, message = NULL, "
            "finished_at = ? WHERE id = ? AND state = 'running'",
            (
                float(result["error"]),
                int(result["epochs"]),
                json.dumps(list(result["curve"])),
                float(result["train_seconds"]),
                float(result["images_per_second"]),
                int(result["peak_memory_bytes"]),
                str(result["device"]),
                str(result["host"]),
                int(bool(result["synthetic"])),
                time.time(),
                trial_id,
            ),
        )
        return n == 1

    def fail(self, trial_id: int, message: str) -> int:
        """Mark a trial failed with its message; returns its finished attempts."""
        self._write(
            f"UPDATE {TRIALS_TABLE} SET state = 'failed', attempts = attempts + 1, "
            "message = ?, finished_at = ? WHERE id = ? AND state = 'running'",
            (message, time.time(), trial_id),
        )
        row = self._con.execute(
            f"SELECT attempts FROM {TRIALS_TABLE} WHERE id = ?", (trial_id,)
        ).fetchone()
        return int(row[0])

    def release(self, trial_ids: Iterable[int]) -> None:
        """Trials interrupted before finishing go back to pending (no attempt counted)."""
        ids = list(trial_ids)
        if not ids:
            return
        self._con.execute("BEGIN IMMEDIATE")
        self._con.executemany(
            f"UPDATE {TRIALS_TABLE} SET state = 'pending' WHERE id = ? AND state = 'running'",
            [(i,) for i in ids],
        )
        self._con.execute("COMMIT")
