"""The study driver: hand runnable trials to an executor and record each event as it comes.

The database is the only state that decides what runs. A run picks the trials that are
pending, running (a previous driver was interrupted) or failed with retries left, keeps every
slot of the executor busy (on Ray, as many as the cluster's live nodes hold), and commits each
event in its own transaction the moment it arrives: a finished epoch (live progress), a
result, a failure (kept in the trial's history; the trial goes back to the end of the queue
while it has retries left), a timeout. Each trial trains into its run folder on the study's
storage, so an interrupted attempt resumes from its last epoch. Interrupting the driver
returns unfinished trials to pending (a kill -9 leaves them `running`, which the next run
treats the same way). Weights beyond the `keep` policy are removed as better trials finish.

Under a scheduler (`scheduler` in the study file), each epoch report is judged in the order
it arrives, the decision committed, then sent to the waiting trial; a stopped trial's result
is recorded `stopped`. A run starts by replaying the recorded decisions in their order, so a
resumed study keeps them and its scheduler picks up where it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..analysis.studydb import StudyDbError
from .database import StudyDatabase, check_db_path, inspect
from .executors import Executor, LocalExecutor, RayExecutor, import_ray
from .scheduler import Scheduler, make_scheduler
from .storage import drop_weights, prepare_storage, remove_new_storage, trial_folder
from .studyfile import (
    LocalExecutorConfig,
    RayExecutorConfig,
    ResolvedStudy,
    keep_count,
    threads_per_trial,
)
from .worker import EpochReport, TrialOutcome, TrialTask, Verdict

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
    stopped: int = 0  # ended early by the study's scheduler


@dataclass(frozen=True)
class RunSummary:
    """What a `study run` did and where the study stands."""

    db: Path
    storage: Path
    total: int
    done: int
    failed: int
    pending: int
    stopped: int  # ended early by the study's scheduler
    attempts: int  # attempts finished in this run (done, stopped or failed)
    wall_seconds: float  # from the first trial handed out to the last outcome recorded
    train_seconds: float  # the trials' own training time, summed over this run's done trials
    driver_seconds: float  # the driver's own work (database, scheduling), waits excluded
    executor: str
    slots: int  # the most trials that ran at once
    threads: int


def check_executor(kind: str) -> None:
    """Refuse an executor that cannot run here (Ray not installed) before anything is written."""
    if kind == "ray":
        import_ray()


def make_executor(
    config: LocalExecutorConfig | RayExecutorConfig, address: str | None
) -> tuple[Executor, int]:
    """Start an executor; returns it and the torch threads each trial gets."""
    threads = threads_per_trial(config)
    if isinstance(config, RayExecutorConfig):
        return RayExecutor(config, address if address is not None else config.address), threads
    return LocalExecutor(config.workers, threads), threads


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
    executor: LocalExecutorConfig | RayExecutorConfig,
    *,
    address: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    announce: Callable[[Path, Path], None] | None = None,
) -> RunSummary:
    """Run every runnable trial of `study`, recording results in the database at `db_path`
    and the trials' run folders under the study's storage folder. `announce(db, storage)` is
    called once both are checked and held, before the first trial starts."""
    try:
        return _run(study, Path(db_path), executor, address, progress, announce)
    except sqlite3.Error as exc:  # a full disk, a file removed under us: one line
        raise StudyDbError(f"{db_path}: cannot write the study database: {exc}") from None


def _run(
    study: ResolvedStudy,
    db_path: Path,
    executor: LocalExecutorConfig | RayExecutorConfig,
    address: str | None,
    progress: Callable[[RunProgress], None] | None,
    announce: Callable[[Path, Path], None] | None,
) -> RunSummary:
    check_executor(executor.kind)
    check_db_path(db_path)
    # Check an existing database and the storage, and start the executor, before the
    # database is written, so that a refused run leaves nothing behind.
    existing = inspect(db_path, study, study.file.retries)
    study_id = existing.study_id if existing and existing.study_id else secrets.token_hex(8)
    todo = existing.runnable if existing is not None else len(study.trials)
    storage = study.storage(db_path)
    pool, threads = make_executor(executor, address) if todo else (None, 0)
    created = False
    try:
        created = prepare_storage(storage, study_id, study.name)
        if pool is not None:
            pool.check_storage(storage)
        db = StudyDatabase.open(db_path, study, study_id)
    except BaseException:
        if pool is not None:
            pool.close()
        if created:
            remove_new_storage(storage)
        raise
    with db, _terminate_as_interrupt():
        run = _Run(study, db, pool, storage, threads, executor.kind)
        run.start()
        if announce is not None:
            announce(db_path, storage)
        try:
            run.loop(progress)
        finally:
            run.stop()
        return run.summary()


@dataclass
class _Attempt:
    """A trial handed to the executor: when, and where it runs once it reports."""

    started: float  # time.monotonic()
    host: str | None = None


class _Run:
    """One run of the driver over an open database (mutable bookkeeping of the loop)."""

    def __init__(
        self,
        study: ResolvedStudy,
        db: StudyDatabase,
        pool: Executor | None,
        storage: Path,
        threads: int,
        kind: str,
    ) -> None:
        self.study, self.db, self.pool, self.storage = study, db, pool, storage
        self.threads, self.kind = threads, kind
        self.retries = study.file.retries
        self.data = study.data.model_dump(mode="json")
        self.keep = keep_count(study.file.keep)
        timeout = study.file.trial_timeout
        self.timeout = None if timeout is None else float(timeout) * 60.0
        self.queue = deque(db.runnable(self.retries))
        self.states = db.states()
        values = list(self.states.values())
        self.counts = {s: values.count(s) for s in ("done", "failed", "running", "stopped")}
        self.scheduler: Scheduler | None = make_scheduler(study.file.scheduler, study.recipe.epochs)
        self.verdicts: dict[tuple[int, int], bool] = {}
        if self.scheduler is not None:
            for trial_id, epoch, error, stop in db.decisions():  # replayed in their order
                self.scheduler.observe(trial_id, epoch, error)
                self.verdicts[(trial_id, epoch)] = stop
        self.running: dict[int, _Attempt] = {}
        self.live: dict[int, EpochReport] = {}
        self.kept: list[tuple[float, int]] = []
        self.attempts, self.train_seconds, self.durations = 0, 0.0, []
        self.slots, self.max_slots, self.driver_seconds, self.wall = 0, 0, 0.0, 0.0
        self.t0 = time.perf_counter()

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Record the run in the meta table; drop the weights `keep` no longer keeps."""
        self.slots = self.pool.refresh() if self.pool is not None else 0
        meta = {
            "executor": self.kind,
            "slots": str(self.slots),
            "threads": str(self.threads),
            "retries": str(self.retries),
            "driver": f"{socket.gethostname()}:{os.getpid()}",
            "run_started_at": repr(time.time()),
            "storage": str(self.storage),
            "keep": self.study.file.keep,
            "classes": str(self.db.classes),  # the divergence rule's, for `status` and analyze
        }
        before = self.db.meta()
        if self.keep is not None:
            self.kept = self.db.best(self.keep) if self.keep else []
            ids = {i for _, i in self.kept}
            maybe = _listed(before) if before.get("keep") == meta["keep"] else None
            maybe = self.db.done_ids() if maybe is None else maybe
            drop_weights(trial_folder(self.storage, i) for i in maybe if i not in ids)
            meta["weights_kept"] = json.dumps(sorted(ids))
        else:
            meta["weights_kept"] = "all"
        self.db.set_meta(meta)

    def stop(self) -> None:
        """Stop the executor; unfinished trials go back to pending."""
        if self.pool is not None:
            self.pool.close()
        if self.db.holds_lease():  # else the database is another driver's now
            self.db.release(list(self.running))
        self.wall = time.perf_counter() - self.t0

    def summary(self) -> RunSummary:
        counts = self.db.counts()
        return RunSummary(
            db=self.db.path,
            storage=self.storage,
            total=sum(counts.values()),
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            pending=counts.get("pending", 0) + counts.get("running", 0),
            stopped=counts.get("stopped", 0),
            attempts=self.attempts,
            wall_seconds=self.wall,
            train_seconds=self.train_seconds,
            driver_seconds=self.driver_seconds,
            executor=self.kind,
            slots=self.max_slots,
            threads=self.threads,
        )

    # -- the loop ------------------------------------------------------------------------------

    def loop(self, progress: Callable[[RunProgress], None] | None) -> None:
        """Until every runnable trial has an outcome: hand out, wait, record."""
        pool = self.pool
        while pool is not None and (self.queue or self.running):
            t = time.perf_counter()
            self.db.check_lease()
            self.fill(pool)
            waited = time.perf_counter()
            events = pool.wait(POLL_SECONDS)
            t += time.perf_counter() - waited  # the wait is not the driver's work
            for event in events:
                self.handle(event)
            self.expire(pool)
            if self.live:
                rows = [(r.id, r.epoch, r.epochs, r.error, r.train_loss, r.seconds, r.host, r.pid)
                        for r in self.live.values()]  # fmt: skip
                self.db.set_live(rows)
                self.live.clear()
            if progress is not None:
                progress(self.progress())
            self.driver_seconds += time.perf_counter() - t

    def fill(self, pool: Executor) -> None:
        """Hand out queued trials while the executor has free slots."""
        slots = pool.refresh()
        if slots != self.slots:  # a Ray node joined or left: `status` divides its ETA by it
            self.slots = slots
            self.db.set_meta({"slots": str(slots)})
        self.max_slots = max(self.max_slots, min(slots, len(self.queue) + len(self.running)))
        while self.queue and len(self.running) < slots:
            trial_id = self.queue.popleft()
            spec, fields = self.db.task_fields(trial_id)
            recipe = self.study.trial_recipe(fields).model_dump(mode="json")
            self.db.mark_running(trial_id)
            folder = str(trial_folder(self.storage, trial_id))
            keep_weights = self.keep != 0
            pool.submit(TrialTask(trial_id, spec, recipe, self.data, self.threads,
                                  run_dir=folder, keep_weights=keep_weights,
                                  ask=self.scheduler is not None))  # fmt: skip
            self.running[trial_id] = _Attempt(time.monotonic())
            self._count(trial_id, "running")

    def handle(self, event: EpochReport | TrialOutcome) -> None:
        """Record one event: an epoch of a running trial, or an attempt's outcome."""
        if isinstance(event, EpochReport):
            if event.id not in self.running:
                return  # cancelled (a timeout): its worker is gone
            self.running[event.id].host = event.host
            self.live[event.id] = event
            if self.scheduler is not None and self.pool is not None:
                stop = self.judge(self.scheduler, event)
                self.pool.answer(Verdict(event.id, event.epoch, stop))
            return
        attempt = self.running.pop(event.id, None)
        if attempt is None:
            return  # cancelled (a timeout) or not ours
        self.live.pop(event.id, None)
        self.durations.append(time.monotonic() - attempt.started)
        self.attempts += 1
        if event.result is not None:
            self.finish(event.id, event.result)
        else:
            self.fail(event.id, event.message or "failed", event.host or attempt.host)

    def judge(self, scheduler: Scheduler, report: EpochReport) -> bool:
        """The scheduler's decision on one epoch (a recorded one is kept), committed before
        the trial hears it."""
        key = (report.id, report.epoch)
        if key not in self.verdicts:
            decision = scheduler.observe(report.id, report.epoch, report.error)
            self.db.record_decision(report.id, report.epoch, report.error, decision)
            self.verdicts[key] = decision.stop
        return self.verdicts[key]

    def finish(self, trial_id: int, result: dict) -> None:
        """A result: stored with the weights kept; weights that fell out of `keep` go (a
        stopped trial's at once: it was not trained to the end)."""
        dropped: list[tuple[float, int]] = []
        meta = {}
        if result.get("stopped"):
            self.db.finish(trial_id, result, meta)
            drop_weights([trial_folder(self.storage, trial_id)])
            self.train_seconds += float(result["train_seconds"])
            self._count(trial_id, "stopped")
            return
        if self.keep is not None:
            ranked = sorted([*self.kept, (float(result["error"]), trial_id)])
            self.kept, dropped = ranked[: self.keep], ranked[self.keep :]
            meta["weights_kept"] = json.dumps(sorted(i for _, i in ranked))
        self.db.finish(trial_id, result, meta)
        drop_weights(trial_folder(self.storage, i) for _, i in dropped)
        self.train_seconds += float(result["train_seconds"])
        self._count(trial_id, "done")

    def fail(self, trial_id: int, message: str, host: str | None) -> None:
        """A failed attempt: recorded in the trial's history, queued again while retries last."""
        if self.db.fail(trial_id, message, host) <= self.retries:
            self.queue.append(trial_id)
        self._count(trial_id, "failed")

    def _count(self, trial_id: int, state: str) -> None:
        before = self.states.get(trial_id)
        if before in self.counts:
            self.counts[before] -= 1
        self.counts[state] += 1
        self.states[trial_id] = state

    def expire(self, pool: Executor) -> None:
        """Attempts past `trial_timeout` are stopped and fail with that message."""
        if self.timeout is None:
            return
        now = time.monotonic()
        for trial_id, attempt in list(self.running.items()):
            if now - attempt.started > self.timeout:
                pool.cancel(trial_id)
                del self.running[trial_id]
                self.live.pop(trial_id, None)
                self.attempts += 1
                minutes = self.timeout / 60.0
                self.fail(trial_id, f"trial timed out after {minutes:g} minutes "
                          "(trial_timeout)", attempt.host)  # fmt: skip

    def progress(self) -> RunProgress:
        eta = None
        if self.durations and self.slots:
            mean = sum(self.durations) / len(self.durations)
            eta = mean * (len(self.queue) + len(self.running)) / self.slots
        return RunProgress(
            done=self.counts["done"],
            failed=self.counts["failed"],
            total=len(self.states),
            running=len(self.running),
            elapsed=time.perf_counter() - self.t0,
            eta=eta,
            stopped=self.counts["stopped"],
        )


def _listed(meta: dict[str, str]) -> list[int] | None:
    """The trials whose weights a previous run may have left (None: unknown, look at all)."""
    try:
        ids = json.loads(meta["weights_kept"])
    except (KeyError, ValueError):
        return None
    return ids if isinstance(ids, list) and all(type(i) is int for i in ids) else None
