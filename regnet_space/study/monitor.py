"""What `study status` and `study best` read: counts, the best trials, live trials, the
driver, failures with their history; by SQL queries, so a study of 100,000 trials answers at
once (no row is decoded but those shown). Read-only, also while a driver writes. No torch.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..analysis.studydb import (
    STATES,
    TRIALS_TABLE,
    StudyDbError,
    connect_readonly,
    diverged_rule,
    read_meta,
    scheduler_of,
    trial_columns,
)
from .tables import HISTORY_TABLE, LIVE_TABLE, has_table, read_lease

MAX_FAILURES_SHOWN = 1000  # failures listed with their messages (the count is always exact)


def read_status(path: str | Path, top: int) -> dict[str, Any]:
    """The study's state now, as `study status --json` prints it."""
    p = Path(path)
    con = connect_readonly(p)
    try:
        con.execute("BEGIN")  # one consistent snapshot
        meta = read_meta(con, str(p))
        out = _status(con, meta, p, top)
        con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StudyDbError(f"{p}: cannot read the study database: {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise StudyDbError(f"{p}: damaged study database: {exc}") from None
    finally:
        con.close()
    return out


def _status(con: sqlite3.Connection, meta: Mapping[str, str], p: Path, top: int) -> dict[str, Any]:
    counts = dict.fromkeys(STATES, 0)
    for state, n in con.execute(f"SELECT state, COUNT(*) FROM {TRIALS_TABLE} GROUP BY state"):
        counts[state] = int(n)
    lease = read_lease(con)
    driver = None
    if lease is not None and lease.alive(time.time()):
        driver = {"pid": lease.pid, "host": lease.host, "since": lease.since}
    # Trials `running` without a driver were interrupted: the next run resumes them.
    interrupted = 0 if driver is not None else counts["running"]
    counts["running"] -= interrupted
    retries = int(meta.get("retries", "0") or 0)
    out: dict[str, Any] = {
        "name": meta.get("name", p.stem),
        "db": str(p),
        "total": sum(counts.values()),
        **counts,
        "interrupted": interrupted,
        "best": best_trials(con, top),
        "eta_seconds": _eta(con, meta, counts, retries) if driver is not None else None,
        "executor": meta.get("executor"),
        "storage": meta.get("storage"),
        "keep": meta.get("keep"),
        "driver": driver,
        "live": _live(con) if driver is not None else [],
        "scheduler": scheduler_of(meta),
        **_diverged(con, meta),
    }
    out.update(_failures(con))
    return out


def _diverged(con: sqlite3.Connection, meta: Mapping[str, str]) -> dict[str, Any]:
    """Finished trials flagged diverged (None: the database does not say, schema 1)."""
    if "diverged" not in trial_columns(con):
        return {"diverged": None, "diverged_rule": None}
    rows = con.execute(
        f"SELECT id, name, error, state FROM {TRIALS_TABLE} WHERE diverged = 1 ORDER BY id LIMIT ?",
        (MAX_FAILURES_SHOWN,),
    ).fetchall()
    classes = meta.get("classes", "")
    rule = diverged_rule(int(classes)) if classes.isdigit() else None
    keys = ("id", "name", "error", "state")
    return {"diverged": [dict(zip(keys, r, strict=True)) for r in rows], "diverged_rule": rule}


def best_trials(con: sqlite3.Connection, top: int) -> list[dict[str, Any]]:
    """The `top` finished trials of lowest error (ties by id), with their sampled recipe."""
    rows = con.execute(
        "SELECT id, name, error, flops, params, train_seconds, images_per_second, recipe "
        f"FROM {TRIALS_TABLE} WHERE state = 'done' AND error IS NOT NULL "
        "AND abs(error) < 1e308 ORDER BY error, id LIMIT ?",
        (top,),
    ).fetchall()
    out = []
    for tid, name, error, flops, params, seconds, speed, recipe in rows:
        fields = json.loads(recipe) if recipe else {}
        out.append(
            {
                "id": tid,
                "name": name,
                "error": error,
                "flops": flops,
                "params": params,
                "train_seconds": seconds,
                "images_per_second": speed,
                **({"recipe": fields} if fields else {}),
            }
        )
    return out


def _eta(
    con: sqlite3.Connection, meta: Mapping[str, str], counts: Mapping[str, int], retries: int
) -> float | None:
    """Seconds left at the mean time of the finished trials over the run's slots."""
    if counts["running"] == 0:
        return None
    (mean,) = con.execute(
        f"SELECT AVG(finished_at - started_at) FROM {TRIALS_TABLE} WHERE state = 'done' "
        "AND finished_at IS NOT NULL AND started_at IS NOT NULL"
    ).fetchone()
    (retry,) = con.execute(
        f"SELECT COUNT(*) FROM {TRIALS_TABLE} WHERE state = 'failed' AND attempts <= ?",
        (retries,),
    ).fetchone()
    remaining = counts["pending"] + counts["running"] + int(retry)
    slots = max(1, int(meta.get("slots", "1") or 1))
    return None if mean is None else float(mean) * remaining / slots


def _live(con: sqlite3.Connection) -> list[dict[str, Any]]:
    """Running trials' last finished epoch (those that finished one)."""
    if not has_table(con, LIVE_TABLE):
        return []
    rows = con.execute(
        f"SELECT l.id, l.epoch, l.epochs, l.error, l.seconds, l.host, l.pid, l.updated_at "
        f"FROM {LIVE_TABLE} l JOIN {TRIALS_TABLE} t ON t.id = l.id "
        "WHERE t.state = 'running' ORDER BY l.id"
    ).fetchall()
    keys = ("id", "epoch", "epochs", "error", "seconds", "host", "pid", "updated_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _failures(con: sqlite3.Connection) -> dict[str, Any]:
    """Failed trials and trials that finished after failing, with their failed attempts."""
    history: dict[int, list[dict[str, Any]]] = {}
    if has_table(con, HISTORY_TABLE):
        for tid, attempt, message, host, finished in con.execute(
            f"SELECT id, attempt, message, host, finished_at FROM {HISTORY_TABLE} "
            "ORDER BY id, attempt"
        ):
            row = {"attempt": attempt, "message": message, "host": host, "finished_at": finished}
            history.setdefault(tid, []).append(row)
    failures = [
        {"id": t, "name": name, "attempts": a, "message": m, "history": history.get(t, [])}
        for t, name, a, m in con.execute(
            f"SELECT id, name, attempts, message FROM {TRIALS_TABLE} WHERE state = 'failed' "
            "ORDER BY id LIMIT ?",
            (MAX_FAILURES_SHOWN,),
        )
    ]
    retried = []
    for tid in sorted(history):
        row = con.execute(
            f"SELECT name, state, attempts FROM {TRIALS_TABLE} WHERE id = ?", (tid,)
        ).fetchone()
        if row is not None and row[1] != "failed":
            name, state, attempts = row
            retried.append({"id": tid, "name": name, "state": state, "attempts": attempts,
                            "history": history[tid]})  # fmt: skip
    return {"failures": failures, "retried": retried}
