"""The study database, written side: create it once, then one transaction per state change.

Only the driver writes (workers report to it). Every change of a trial (started, an epoch
finished, finished, failed) is its own committed transaction in WAL mode with
synchronous=FULL, so a Ctrl-C or kill -9 of the driver at any moment loses no finished trial
and leaves the file readable. The file is built beside its target under the project's temp
names (the next writer in the folder removes a killed build) and linked into place only when
complete. One driver at a time holds it: a lease recorded in the database (host, pid,
heartbeat: drivers on two machines sharing a file system exclude each other) beside an
advisory lock on the file (which the kernel drops if the driver dies). A database of an
older schema is upgraded, in one transaction, by the next driver that opens it.
Never imports torch: the schema and the reader live in `analysis.studydb`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.studydb import (
    META_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
    TRIAL_COLUMNS,
    TRIALS_TABLE,
    StudyDbError,
    connect_readonly,
    is_diverged,
    read_meta,
    scheduler_text,
)
from ..infra.atomic import TMP_PREFIX, umask_mode
from ..infra.paths import check_target
from .data import num_classes
from .errors import StudyError
from .scheduler import Decision
from .studyfile import ResolvedStudy, TrialPlan
from .tables import (
    DECISIONS_TABLE,
    EXTRA_SCHEMA,
    HEARTBEAT_SECONDS,
    HISTORY_TABLE,
    LEASE_SECONDS,
    LEASE_TABLE,
    LIVE_TABLE,
    read_lease,
)
from .tables import my_identity as _me

try:  # advisory locking; absent on Windows, where the lease alone excludes a second driver
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

RUNNABLE = "state IN ('pending', 'running') OR (state = 'failed' AND attempts <= ?)"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def _trial_rows(trials: Iterable[TrialPlan]) -> list[tuple[Any, ...]]:
    rows = []
    for t in trials:
        r = t.record
        spec, record = json.dumps(r.to_dict_spec()), json.dumps(r.to_dict())
        recipe = json.dumps(dict(t.recipe_fields))
        rows.append((r.id, r.spec["name"], spec, record, r.flops, r.params, r.acts, recipe))
    return rows


def _insert_trials(con: sqlite3.Connection, trials: Iterable[TrialPlan]) -> None:
    cols = "id, name, spec, record, flops, params, acts, recipe, state, attempts"
    con.executemany(
        f"INSERT INTO {TRIALS_TABLE} ({cols}) VALUES (?,?,?,?,?,?,?,?,'pending',0)",
        _trial_rows(trials),
    )


def _meta(study: ResolvedStudy, study_id: str) -> dict[str, str]:
    return {
        "study_hash": study.digest,
        "name": study.name,
        "study": study.canonical,
        "study_file": str(study.path),
        "n": str(len(study.trials)),
        "study_id": study_id,
    }


def _create(path: Path, study: ResolvedStudy, study_id: str) -> None:
    """Build the complete database beside `path`, then link it into place (never half made)."""
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    try:
        con = _connect(tmp)
        try:
            con.execute("BEGIN")
            for statement in (*SCHEMA, *EXTRA_SCHEMA):
                con.execute(statement)
            meta = {"schema_version": str(SCHEMA_VERSION), **_meta(study, study_id)}
            meta["created_at"] = repr(time.time())
            con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", meta.items())
            _insert_trials(con, study.trials)
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
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(f"{tmp}{suffix}")


@dataclass(frozen=True)
class Existing:
    """What an existing database holds for a study: checked, not changed."""

    study_id: str | None  # None for a database made before study ids
    n: int  # its trials (fewer than the study file's n: the study grows)
    runnable: int  # trials a run would start, new ones included


def check_db_path(path: Path) -> None:
    """A study database path: a regular file or a new name in a writable folder (a FIFO,
    device or folder is refused at once, never opened); dead builds beside it removed."""
    check_target(path, force=True)


def _trial_count(con: sqlite3.Connection) -> int:
    return int(con.execute(f"SELECT COUNT(*) FROM {TRIALS_TABLE}").fetchone()[0])


def _growth(meta: Mapping[str, str], n: int, p: Path, study: ResolvedStudy) -> int:
    """The trials a database of `n` trials keeps for `study`; refuses another study's (of
    the study file's keys that decide results, only n may change, and only rise)."""
    wanted = len(study.trials)
    if meta.get("study_hash") == study.digest and n == wanted:
        return n
    if meta.get("study_hash") == study.digest_at(n):
        if n < wanted:
            return n
        raise StudyError(
            f"{p}: holds {n} trials; n may rise, never fall (the study file has n: {wanted})"
        )
    before = _scheduler_change(meta, study)
    if before is not None:
        raise StudyError(
            f"{p}: was run with scheduler {before}, the study file asks for "
            f"{scheduler_text(study.file.scheduler.model_dump(mode='json'))}: the scheduler "
            "decides which trials stop early, so it cannot change between runs of one "
            "database; use another --db"
        )
    raise StudyError(
        f"{p}: holds study {meta.get('name', '?')!r} made from a different study file "
        "(space, seed, constraints, recipe, search, data or scheduler differ; only n may "
        "rise); use another --db"
    )


def _scheduler_change(meta: Mapping[str, str], study: ResolvedStudy) -> str | None:
    """The recorded scheduler, in words, when nothing else of the study differs; else None."""
    try:
        recorded = json.loads(meta.get("study", ""))
    except ValueError:
        return None
    if not isinstance(recorded, dict):
        return None
    ours = json.loads(study.canonical)
    before, after = recorded.pop("scheduler", None), ours.pop("scheduler", None)
    recorded.pop("n", None)
    ours.pop("n", None)
    if recorded != ours or before == after:
        return None
    return scheduler_text(before if isinstance(before, dict) else {"kind": "none"})


def _upgrade(con: sqlite3.Connection, meta: Mapping[str, str], classes: int) -> None:
    """Schema 1 -> 2 (the `stopped` state, the `diverged` flag) inside the caller's
    transaction. SQLite cannot change a CHECK constraint in place: the trials table is
    rebuilt, its rows copied, and the finished trials judged for divergence."""
    if int(meta.get("schema_version", SCHEMA_VERSION)) >= SCHEMA_VERSION:
        return
    old = f"{TRIALS_TABLE}_schema1"
    con.execute(f"ALTER TABLE {TRIALS_TABLE} RENAME TO {old}")  # its index goes with it
    for statement in SCHEMA:
        con.execute(statement)
    columns = ", ".join(c for c in TRIAL_COLUMNS if c != "diverged")
    con.execute(f"INSERT INTO {TRIALS_TABLE} ({columns}) SELECT {columns} FROM {old}")
    con.execute(f"DROP TABLE {old}")
    rows = con.execute(f"SELECT id, curve FROM {TRIALS_TABLE} WHERE state = 'done'").fetchall()
    con.executemany(
        f"UPDATE {TRIALS_TABLE} SET diverged = ? WHERE id = ?",
        [(int(_curve_diverged(curve, classes)), i) for i, curve in rows],
    )
    con.execute(
        f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
    )


def _curve_diverged(text: str | None, classes: int) -> bool:
    try:
        return is_diverged(json.loads(text or "[]"), classes)
    except (ValueError, TypeError, KeyError):
        return False  # a damaged curve says nothing; `analyze` names it when it reads it


def inspect(path: Path, study: ResolvedStudy, retries: int) -> Existing | None:
    """An existing database checked against `study` without writing; None if there is none.

    Refuses another study's database and one held by a live driver.
    """
    if not path.exists():
        return None
    ro = connect_readonly(path)
    try:
        meta = read_meta(ro, str(path))
        n = _growth(meta, _trial_count(ro), path, study)
        lease = read_lease(ro)
        if lease is not None and lease.alive(time.time()):
            raise _held(path, lease.describe(), lease.since)
        (runnable,) = ro.execute(
            f"SELECT COUNT(*) FROM {TRIALS_TABLE} WHERE {RUNNABLE}", (retries,)
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{path}: cannot read the study database: {exc}") from None
    finally:
        ro.close()
    return Existing(meta.get("study_id"), n, int(runnable) + len(study.trials) - n)


def _held(path: Path, who: str, since: float) -> StudyError:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return StudyError(f"{path}: another `study run` is using this database ({who}, since {when})")


class StudyDatabase:
    """An open study database held by this driver; every method commits before returning."""

    def __init__(
        self, path: Path, con: sqlite3.Connection, lock_fd: int | None, classes: int
    ) -> None:
        self.path = path
        self._con = con
        self._lock_fd = lock_fd
        self.classes = classes  # of the study's data: the divergence rule's ln(classes)
        self.token = secrets.token_hex(8)
        self._beat: _Heartbeat | None = None

    @classmethod
    def open(
        cls, path: str | Path, study: ResolvedStudy, study_id: str | None = None
    ) -> StudyDatabase:
        """Create the database for `study`, or open it to resume (adding the trials of a
        raised n); take its lease. Refuses another study's database and a held one."""
        p = Path(path)
        check_db_path(p)
        if not p.exists():
            _create(p, study, study_id or secrets.token_hex(8))
        lock_fd = cls._lock(p)
        try:
            db = cls(p, _connect(p), lock_fd, num_classes(study.data))
        except sqlite3.Error as exc:
            cls._unlock(lock_fd)
            raise StudyDbError(f"{p}: cannot open: {exc}") from None
        try:
            db._take(study, study_id)
        except BaseException:
            db.close()
            raise
        return db

    def _take(self, study: ResolvedStudy, study_id: str | None) -> None:
        """In one transaction: the driver's tables, the lease, and the trials of a raised n."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            meta = read_meta(con, str(self.path))
            n = _growth(meta, _trial_count(con), self.path, study)
            _upgrade(con, meta, self.classes)
            for statement in EXTRA_SCHEMA:
                con.execute(statement)
            lease = read_lease(con)
            if lease is not None and lease.alive(time.time()):
                raise _held(self.path, lease.describe(), lease.since)
            host, pid, process = _me()
            now = time.time()
            con.execute(f"DELETE FROM {LEASE_TABLE}")
            con.execute(f"INSERT INTO {LEASE_TABLE} VALUES (1, ?, ?, ?, ?, ?, ?)",
                        (host, pid, process, self.token, now, now))  # fmt: skip
            con.execute(f"DELETE FROM {LIVE_TABLE}")  # a previous driver's trials are over
            if n < len(study.trials):
                _insert_trials(con, study.trials[n:])
            values = _meta(study, meta.get("study_id") or study_id or secrets.token_hex(8))
            con.executemany(f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", values.items())
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._beat = _Heartbeat(self.path, self.token)

    @staticmethod
    def _lock(p: Path) -> int | None:
        if fcntl is None:
            return None
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
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
        """Give the lease back, close the connection and drop the lock."""
        if self._beat is not None:
            self._beat.stop()
            self._beat = None
            with contextlib.suppress(sqlite3.Error):
                self._con.execute(f"DELETE FROM {LEASE_TABLE} WHERE token = ?", (self.token,))
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
        self._unlock(self._lock_fd)
        self._lock_fd = None

    def holds_lease(self) -> bool:
        """Whether this driver still holds the database (no other driver took it over)."""
        return self._beat is not None and not self._beat.lost.is_set()

    def check_lease(self) -> None:
        """Refuse to go on once another driver has taken the lease (ours expired meanwhile)."""
        if self._beat is not None and self._beat.lost.is_set():
            raise StudyError(
                f"{self.path}: this driver lost its lease (not renewed within "
                f"{LEASE_SECONDS:g} s); another `study run` took the database over"
            )

    def __enter__(self) -> StudyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """The meta table."""
        return dict(self._con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())

    def states(self) -> dict[int, str]:
        """Every trial's state by id."""
        return dict(self._con.execute(f"SELECT id, state FROM {TRIALS_TABLE}").fetchall())

    def task_fields(self, trial_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """A trial's spec fields and sampled recipe fields, as the database holds them."""
        row = self._con.execute(
            f"SELECT spec, recipe, record FROM {TRIALS_TABLE} WHERE id = ?", (trial_id,)
        ).fetchone()
        values = []
        for column, text in zip(("spec", "recipe", "record"), row, strict=True):
            try:
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise TypeError(f"a {type(value).__name__}, not a JSON object")
            except (TypeError, ValueError) as exc:
                raise StudyDbError(
                    f"{self.path}: damaged study database: trial {trial_id}'s {column}: {exc}"
                ) from None
            values.append(value)
        return values[0], values[1]

    def runnable(self, retries: int) -> list[int]:
        """Trials to run: pending, running (interrupted) and failed with retries left."""
        rows = self._con.execute(
            f"SELECT id FROM {TRIALS_TABLE} WHERE {RUNNABLE} ORDER BY id", (retries,)
        ).fetchall()
        return [r[0] for r in rows]

    def best(self, k: int) -> list[tuple[float, int]]:
        """(error, id) of the k best finished trials, best first (ties by id)."""
        rows = self._con.execute(
            f"SELECT error, id FROM {TRIALS_TABLE} WHERE state = 'done' AND error IS NOT NULL "
            "ORDER BY error, id LIMIT ?",
            (k,),
        ).fetchall()
        return [(float(e), int(i)) for e, i in rows]

    def done_ids(self) -> list[int]:
        """Every finished trial's id (trained to the end or stopped early)."""
        rows = self._con.execute(
            f"SELECT id FROM {TRIALS_TABLE} WHERE state IN ('done', 'stopped')"
        )
        return [r[0] for r in rows.fetchall()]

    def decisions(self) -> list[tuple[int, int, float, bool]]:
        """The scheduler's recorded decisions, in the order it made them: (id, epoch, error,
        stop)."""
        rows = self._con.execute(
            f"SELECT id, epoch, error, stop FROM {DECISIONS_TABLE} ORDER BY seq"
        ).fetchall()
        return [(int(i), int(e), float(err), bool(s)) for i, e, err, s in rows]

    # -- writing: one committed transaction each -----------------------------------------------

    def _transaction(self, statements: Iterable[tuple[str, Iterable[Any]]]) -> list[int]:
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            counts = [con.execute(sql, tuple(params)).rowcount for sql, params in statements]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return counts

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Record facts about the current run (executor, parallelism, storage) for `status`."""
        sql = f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)"
        self._transaction((sql, kv) for kv in values.items())

    def mark_running(self, trial_id: int) -> None:
        """A trial was handed to a worker."""
        self._transaction(
            [
                (
                    f"UPDATE {TRIALS_TABLE} SET state = 'running', started_at = ?, "
                    "finished_at = NULL WHERE id = ? AND state NOT IN ('done', 'stopped')",
                    (time.time(), trial_id),
                )
            ]
        )

    def set_live(self, rows: Iterable[tuple[int, int, int, float, float, float, str, int]]) -> None:
        """Running trials' last finished epochs: (id, epoch, epochs, error, loss, seconds,
        host, pid), for `status`; trials that are no longer running are skipped."""
        sql = (
            f"INSERT OR REPLACE INTO {LIVE_TABLE} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "
            f"WHERE EXISTS (SELECT 1 FROM {TRIALS_TABLE} WHERE id = ? AND state = 'running')"
        )
        now = time.time()
        self._transaction((sql, (*r, now, r[0])) for r in rows)

    def record_decision(self, trial_id: int, epoch: int, error: float, d: Decision) -> None:
        """One decision of the scheduler (before the worker hears it, so a resumed driver
        keeps it)."""
        sql = (
            f"INSERT OR IGNORE INTO {DECISIONS_TABLE} (id, epoch, error, stop, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._transaction([(sql, (trial_id, epoch, error, int(d.stop), d.reason, time.time()))])

    def finish(self, trial_id: int, result: Mapping[str, Any], meta: Mapping[str, str]) -> bool:
        """Store a trial's result (done, or stopped when a scheduler ended it early) and
        `meta` with it; False when the trial was not running (ignored)."""
        sql = (
            f"UPDATE {TRIALS_TABLE} SET {_SET_RESULT}, finished_at = ? "
            "WHERE id = ? AND state = 'running'"
        )
        put = f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)"
        counts = self._transaction(
            [
                (sql, (*_result_values(result, self.classes), time.time(), trial_id)),
                (f"DELETE FROM {LIVE_TABLE} WHERE id = ?", (trial_id,)),
                *((put, kv) for kv in meta.items()),
            ]
        )
        return counts[0] == 1

    def record_results(self, results: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Store many trials' results (done or stopped) in one transaction: results obtained
        elsewhere (an import, a benchmark filling a large database)."""
        sql = (
            f"UPDATE {TRIALS_TABLE} SET {_SET_RESULT}, started_at = ?, finished_at = ? "
            "WHERE id = ? AND state NOT IN ('done', 'stopped')"
        )
        now = time.time()
        self._transaction(
            (
                sql,
                (*_result_values(r, self.classes), now - float(r["train_seconds"]), now, trial_id),
            )
            for trial_id, r in results
        )

    def fail(self, trial_id: int, message: str, host: str | None) -> int:
        """Mark a trial failed with its message (kept in its history); returns its finished
        attempts."""
        now = time.time()
        self._transaction(
            [
                (
                    f"INSERT OR REPLACE INTO {HISTORY_TABLE} SELECT id, attempts + 1, ?, ?, "
                    f"started_at, ? FROM {TRIALS_TABLE} WHERE id = ? AND state = 'running'",
                    (message, host, now, trial_id),
                ),
                (
                    f"UPDATE {TRIALS_TABLE} SET state = 'failed', attempts = attempts + 1, "
                    "message = ?, finished_at = ? WHERE id = ? AND state = 'running'",
                    (message, now, trial_id),
                ),
                (f"DELETE FROM {LIVE_TABLE} WHERE id = ?", (trial_id,)),
            ]
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
        sql = f"UPDATE {TRIALS_TABLE} SET state = 'pending' WHERE id = ? AND state = 'running'"
        live = f"DELETE FROM {LIVE_TABLE} WHERE id = ?"
        self._transaction([s for i in ids for s in ((sql, (i,)), (live, (i,)))])

    def counts(self) -> dict[str, int]:
        """Trials per state."""
        rows = self._con.execute(f"SELECT state, COUNT(*) FROM {TRIALS_TABLE} GROUP BY state")
        return dict(rows.fetchall())


_SET_RESULT = (
    "state = ?, attempts = attempts + 1, error = ?, epochs = ?, curve = ?, "
    "train_seconds = ?, images_per_second = ?, peak_memory_bytes = ?, device = ?, host = ?, "
    "synthetic = ?, diverged = ?, message = NULL"
)


def _result_values(result: Mapping[str, Any], classes: int) -> tuple[Any, ...]:
    """A trainer result's values for _SET_RESULT's placeholders."""
    return (
        "stopped" if result.get("stopped") else "done",
        float(result["error"]),
        int(result["epochs"]),
        json.dumps(list(result["curve"])),
        float(result["train_seconds"]),
        float(result["images_per_second"]),
        int(result["peak_memory_bytes"]),
        str(result["device"]),
        str(result["host"]),
        int(bool(result["synthetic"])),
        int(is_diverged(result["curve"], classes)),
    )


class _Heartbeat:
    """Renews the lease every HEARTBEAT_SECONDS on a connection of its own; sets `lost` when
    another driver has taken it (ours was not renewed in time)."""

    def __init__(self, path: Path, token: str) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._con = _connect(path)
        self._token = token
        self._thread = threading.Thread(target=self._run, name="study-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                n = self._con.execute(
                    f"UPDATE {LEASE_TABLE} SET heartbeat = ? WHERE token = ?",
                    (time.time(), self._token),
                ).rowcount
            except sqlite3.Error:
                continue  # busy or a transient error: the next beat tries again
            if n == 0:
                self.lost.set()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
