"""The study driver: hand runnable trials to an executor and record each outcome as it comes.

The database is the only state. A run picks the trials that are pending, running (a previous
driver was interrupted) or failed with retries left, keeps every worker busy, and commits each
outcome in its own transaction the moment it arrives; a failed trial goes back to the end of
the queue while it has retries left. Interrupting the driver returns unfinished trials to
pending (a kill -9 leaves them `running`, which the next run treats the same way).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..analysis.studydb import STATES, StudyDbError
from .database import StudyDatabase
from .executors import Executor, LocalPool, RayPool, import_ray
from .studyfile import LocalExecutor, RayExecutor, ResolvedStudy, threads_per_trial
from .worker import TrialTask

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RunProgress:
    """Where a run is, for a progress line."""

    done: int
    failed: int
    total: int
    running: int
    elapsed: float
    eta: float | None  # seconds, from this run's mean trial time and parallelism


@dataclass(frozen=True)
class RunSummary:
    """What a `study run` did and where the study stands."""

    db: Path
    total: int
    done: int
    failed: int
    pending: int
    attempts: int  # attempts finished in this run (done or failed)
    wall_seconds: float  # from the first trial handed out to the last outcome recorded
    train_seconds: float  # the trials' own training time, summed over this run's done trials
    executor: str
    slots: int
    threads: int


def check_executor(kind: str) -> None:
    """Refuse an executor that cannot run here (Ray not installed) before anything is written."""
    if kind == "ray":
        import_ray()


def make_executor(config: LocalExecutor | RayExecutor, address: str | None) -> tuple[Executor, int]:
    """Start an executor; returns it and the torch threads each trial gets."""
    threads = threads_per_trial(config)
    if isinstance(config, RayExecutor):
        return RayPool(config, address if address is not None else config.address), threads
    return LocalPool(config.workers, threads), threads


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` (SIGTERM) stops a run as cleanly as Ctrl-C


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While a run goes on, SIGTERM unwinds like Ctrl-C (workers stopped, trials released)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_study(
    study: ResolvedStudy,
    db_path: str | Path,
    executor: LocalExecutor | RayExecutor,
    *,
    address: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
) -> RunSummary:
    """Run every runnable trial of `study`, recording results in the database at `db_path`."""
    try:
        return _run(study, db_path, executor, address, progress)
    except sqlite3.Error as exc:  # a full disk, a file removed under us: one line
        raise StudyDbError(f"{db_path}: cannot write the study database: {exc}") from None


def _run(
    study: ResolvedStudy,
    db_path: str | Path,
    executor: LocalExecutor | RayExecutor,
    address: str | None,
    progress: Callable[[RunProgress], None] | None,
) -> RunSummary:
    check_executor(executor.kind)
    retries = study.file.retries
    data = study.data.model_dump(mode="json")
    recipes = {t.record.id: t.recipe_fields for t in study.trials}
    specs = {t.record.id: t.record.to_dict_spec() for t in study.trials}
    # Check an existing database and start the executor before anything is written, so a
    # refused database or an unreachable cluster leaves no file behind.
    todo = StudyDatabase.runnable_count(db_path, study, retries)
    pool, threads = make_executor(executor, address) if todo else (None, 0)
    try:
        db = StudyDatabase.open(db_path, study)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    with db, _terminate_as_interrupt():
        queue = deque(db.runnable(retries))
        states = {t.id: t.state for t in db.trials()}
        slots = pool.slots if pool is not None else 0
        if pool is not None:
            db.set_meta(
                {
                    "executor": executor.kind,
                    "slots": str(slots),
                    "threads": str(threads),
                    "retries": str(retries),
                    "driver": f"{socket.gethostname()}:{os.getpid()}",
                    "run_started_at": repr(time.time()),
                }
            )
        running: dict[int, float] = {}
        attempts, train_seconds, durations = 0, 0.0, []
        t0 = time.perf_counter()
        try:
            while pool is not None and (queue or running):
                while queue and len(running) < slots:
                    trial_id = queue.popleft()
                    recipe = study.trial_recipe(recipes[trial_id]).model_dump(mode="json")
                    db.mark_running(trial_id)
                    pool.submit(TrialTask(trial_id, specs[trial_id], recipe, data, threads))
                    running[trial_id] = time.perf_counter()
                    states[trial_id] = "running"
                for outcome in pool.wait(POLL_SECONDS):
                    started = running.pop(outcome.id, None)
                    if started is None:
                        continue
                    durations.append(time.perf_counter() - started)
                    attempts += 1
                    if outcome.result is not None:
                        db.finish(outcome.id, outcome.result)
                        train_seconds += float(outcome.result["train_seconds"])
                        states[outcome.id] = "done"
                    else:
                        states[outcome.id] = "failed"
                        if db.fail(outcome.id, outcome.message or "failed") <= retries:
                            queue.append(outcome.id)
                if progress is not None:
                    progress(_progress(states, t0, durations, len(queue), slots))
        finally:
            if pool is not None:
                pool.close()
            db.release(list(running))
            wall = time.perf_counter() - t0
        counts = dict.fromkeys(STATES, 0)
        for t in db.trials():
            counts[t.state] += 1
    return RunSummary(
        db=Path(db_path),
        total=len(study.trials),
        done=counts["done"],
        failed=counts["failed"],
        pending=counts["pending"] + counts["running"],
        attempts=attempts,
        wall_seconds=wall,
        train_seconds=train_seconds,
        executor=executor.kind,
        slots=slots,
        threads=threads,
    )


def _progress(
    states: dict[int, str], t0: float, durations: list[float], queued: int, slots: int
) -> RunProgress:
    values = list(states.values())
    running = values.count("running")
    eta = None
    if durations and slots:
        eta = sum(durations) / len(durations) * (queued + running) / slots
    return RunProgress(
        values.count("done"),
        values.count("failed"),
        len(values),
        running,
        time.perf_counter() - t0,
        eta,
    )
