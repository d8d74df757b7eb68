"""Where trials run: a pool of long-lived local worker processes, or Ray tasks.

Both executors have the same small interface: `slots` (trials that can run at once, which on
Ray follows the cluster as nodes join and leave), `submit(task)`, `wait(timeout)` -> epoch
reports and finished outcomes, `answer(verdict)` (to a trial that asks after each epoch),
`cancel(trial_id)`, `check_storage(folder)` and `close()`. A worker that dies (a crash, the
kernel's out-of-memory killer, a lost Ray node) fails its attempt only; the local pool starts
a fresh worker in its place. Workers never touch the database: they report each finished
epoch through the executor's channel (a pipe, or a small Ray actor on the driver's node),
hear verdicts the same way, and return the outcome.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import StudyError
from .storage import check_node_probe, node_probe, write_driver_probe
from .studyfile import RayExecutorConfig, cores
from .worker import EpochReport, TrialOutcome, TrialTask, Verdict, pick_device, run_trial

RAY_HINT = "pip install 'regnet-space[ray]' (or pip install -e \".[ray]\" in a checkout)"
Event = EpochReport | TrialOutcome


class Executor(Protocol):
    """What the driver needs from an executor."""

    slots: int

    def refresh(self) -> int: ...

    def submit(self, task: TrialTask) -> None: ...

    def wait(self, timeout: float) -> list[Event]: ...

    def answer(self, verdict: Verdict) -> None: ...

    def cancel(self, trial_id: int) -> None: ...

    def check_storage(self, storage: Path) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Local: long-lived spawned worker processes, one pipe each


def _watch_parent(parent: int) -> None:
    """Exit when the driver is gone (kill -9 leaves no one to read our result): within half
    a second where the kernel does not end us at once (see _worker_main)."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _worker_main(conn: Any, index: int, threads: int, parent: int) -> None:
    """A worker process: train the tasks sent on `conn`, one at a time, until told to stop;
    each finished epoch is sent back as it happens, then the outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    with contextlib.suppress(OSError, AttributeError):  # Linux: killed when the driver dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.environ["OMP_NUM_THREADS"] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch  # load it while the driver hands out work

    torch.set_num_threads(threads)
    device = pick_device(index)

    def report(r: EpochReport) -> None:
        with contextlib.suppress(OSError):  # the driver is gone: the watcher ends us
            conn.send(r)

    def ask(trial_id: int, epoch: int) -> bool:
        while True:  # only verdicts come while a trial runs; a stale one is skipped
            msg = conn.recv()
            if isinstance(msg, Verdict) and (msg.id, msg.epoch) == (trial_id, epoch):
                return msg.stop

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if device is not None and task.device is None:
            task = TrialTask(**{**task.__dict__, "device": device})
        conn.send(run_trial(task, report, ask))


@dataclass
class _Worker:
    """One worker process and the trial it is running (mutable driver-side bookkeeping)."""

    index: int
    process: Any
    conn: Any
    task: int | None = None


class LocalExecutor:
    """`workers` spawned processes, each running one trial at a time with `threads` threads."""

    def __init__(self, workers: int, threads: int) -> None:
        self.slots = workers
        self.threads = threads
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = [self._spawn(i) for i in range(workers)]

    def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_end, index, self.threads, os.getpid()),
            name=f"regnet-space-worker-{index}",
        )
        process.start()
        child_end.close()
        return _Worker(index, process, parent_end)

    def refresh(self) -> int:
        """The pool's size is fixed."""
        return self.slots

    def check_storage(self, storage: Path) -> None:
        """Local workers share the driver's file system: nothing to probe."""

    def busy_pids(self) -> dict[int, int]:
        """Trial id -> process id of the worker running it."""
        return {w.task: w.process.pid for w in self._workers if w.task is not None}

    def submit(self, task: TrialTask) -> None:
        """Hand a trial to an idle worker."""
        worker = next(w for w in self._workers if w.task is None)
        if not worker.process.is_alive():  # died while idle: not this trial's fault
            worker.conn.close()
            worker = self._workers[self._workers.index(worker)] = self._spawn(worker.index)
        worker.task = task.id
        # A worker that dies before reading its task is reported by wait() as a crash.
        with contextlib.suppress(BrokenPipeError, OSError):
            worker.conn.send(task)

    def wait(self, timeout: float) -> list[Event]:
        """Epoch reports and the outcomes of trials that finished (or whose worker died)
        within `timeout`."""
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            time.sleep(timeout)
            return []
        objects = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(multiprocessing.connection.wait(objects, timeout))
        out: list[Event] = []
        for w in busy:
            if w.conn in ready and self._drain(w, out):
                continue
            if w.process.sentinel in ready or w.conn in ready:
                out.append(self._replace(w))
        return out

    @staticmethod
    def _drain(w: _Worker, out: list[Event]) -> bool:
        """Read what a worker sent; False when its pipe broke (the worker died)."""
        try:
            while w.task is not None and w.conn.poll():
                msg = w.conn.recv()
                out.append(msg)
                if isinstance(msg, TrialOutcome):
                    w.task = None
        except (EOFError, OSError):
            return False
        return w.task is None or w.process.is_alive()

    def answer(self, verdict: Verdict) -> None:
        """Send a verdict to the worker running its trial (gone: nothing to do)."""
        for w in self._workers:
            if w.task == verdict.id:
                with contextlib.suppress(BrokenPipeError, OSError):
                    w.conn.send(verdict)

    def _replace(self, w: _Worker) -> TrialOutcome:
        """A dead worker fails its trial; a fresh one takes its place."""
        w.process.join(timeout=5)
        code = w.process.exitcode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if code == -signal.SIGKILL:
            why += " (out of memory?)"
        outcome = TrialOutcome(
            w.task or 0, None, f"worker process died: {why}", socket.gethostname()
        )
        w.conn.close()
        self._workers[self._workers.index(w)] = self._spawn(w.index)
        return outcome

    def cancel(self, trial_id: int) -> None:
        """Stop the worker running `trial_id` (its outcome is dropped); a fresh one follows."""
        for w in self._workers:
            if w.task == trial_id:
                w.process.kill()
                w.process.join(timeout=5)
                w.conn.close()
                self._workers[self._workers.index(w)] = self._spawn(w.index)

    def close(self) -> None:
        """Stop every worker: politely, then by force (a trial still running is abandoned)."""
        for w in self._workers:
            if w.task is None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    w.conn.send(None)
            else:
                w.process.terminate()
        deadline = time.monotonic() + 5
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()


# ---------------------------------------------------------------------------------------------
# Ray: one task per trial


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a host:port (or ray://host:port) address nothing answers at: Ray would wait on."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # `auto` and other forms: Ray's own error
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise StudyError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise StudyError(f"the ray executor needs Ray: {RAY_HINT}") from None
    return ray


class _Inbox:
    """A Ray actor on the driver's node collecting the trials' epoch reports and holding the
    driver's verdicts until their trials collect them."""

    def __init__(self) -> None:
        self.items: list[EpochReport] = []
        self.verdicts: dict[tuple[int, int], bool] = {}

    def put(self, item: EpochReport) -> None:
        self.items.append(item)

    def drain(self) -> list[EpochReport]:
        out, self.items = self.items, []
        return out

    def answer(self, verdict: Verdict) -> None:
        self.verdicts[(verdict.id, verdict.epoch)] = verdict.stop

    def verdict(self, trial_id: int, epoch: int) -> bool | None:
        return self.verdicts.pop((trial_id, epoch), None)


VERDICT_POLL_SECONDS = 0.05  # how often a Ray trial that asks looks for its verdict


def _ray_trial(task: TrialTask, inbox: Any) -> TrialOutcome:
    """A trial as a Ray task: epoch reports go to the driver's inbox actor, verdicts come
    from it."""
    import ray

    def report(r: EpochReport) -> None:
        inbox.put.remote(r)  # fire and forget: a lost report only delays `status`

    def ask(trial_id: int, epoch: int) -> bool:
        while (stop := ray.get(inbox.verdict.remote(trial_id, epoch))) is None:
            time.sleep(VERDICT_POLL_SECONDS)
        return stop

    return run_trial(task, report, ask)


RAY_REFRESH_SECONDS = 2.0  # how often the cluster's resources are read again
PROBE_SECONDS = 120.0


class RayExecutor:
    """Trials as Ray tasks with the study's CPUs and GPUs per trial; as many at once as the
    cluster's live nodes have room for.

    Joins the cluster at `address` (`auto`, host:port or ray://), or starts a local one with
    this machine's cores; an already initialized Ray (a notebook, a test) is used as it is.
    """

    def __init__(self, config: RayExecutorConfig, address: str | None) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = False
        self._refs: dict[Any, int] = {}  # before any close(): it cancels these
        self._asking = False  # some task waits for verdicts: look for reports more often
        self._cpus, self._gpus = config.cpus_per_trial, config.gpus_per_trial
        if not ray.is_initialized():
            self._init(address)
        self._checked = -RAY_REFRESH_SECONDS
        self._storage: Path | None = None
        self._probed: set[str] = set()
        self.slots = 0
        if self.refresh() < 1:
            have = ray.cluster_resources()
            self.close()
            raise StudyError(
                f"the Ray cluster has {have.get('CPU', 0):g} CPU(s) and {have.get('GPU', 0):g} "
                f"GPU(s); a trial asks for {self._cpus:g} CPU(s) and {self._gpus:g} GPU(s)"
            )
        # max_retries=0: a dead worker fails the attempt; the study's retries decide what next.
        self._remote = ray.remote(num_cpus=self._cpus, num_gpus=self._gpus, max_retries=0)(
            _ray_trial
        )
        strategy = self._on_node(ray.get_runtime_context().get_node_id(), soft=True)
        self._inbox = ray.remote(num_cpus=0)(_Inbox).options(scheduling_strategy=strategy).remote()

    def _init(self, address: str | None) -> None:
        ray = self._ray
        options: dict[str, Any] = {
            "log_to_driver": False,
            "include_dashboard": False,
            "logging_level": logging.WARNING,
        }
        if address:
            check_reachable(address)
        try:
            if address and address.startswith("ray://"):
                ray.init(address=address)  # a Ray client: the cluster keeps its settings
            elif address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=max(cores(), int(self._cpus)), **options)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
            where = address or "a local Ray"
            raise StudyError(
                f"cannot start or join {where}: {' '.join(str(exc).split())}"
            ) from None
        self._started = True

    def _on_node(self, node_id: str, soft: bool) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)

    def refresh(self) -> int:
        """Trials that fit on the cluster's live nodes now (read at most every 2 s); nodes
        that joined since the storage was checked are checked first."""
        now = time.monotonic()
        if now - self._checked < RAY_REFRESH_SECONDS:
            return self.slots
        self._checked = now
        if self._storage is not None:
            self._probe(self._storage)
        alive = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        slots = int(sum(r.get("CPU", 0) for r in alive) // self._cpus)
        if self._gpus:
            slots = min(slots, int(sum(r.get("GPU", 0) for r in alive) // self._gpus))
        self.slots = slots
        return slots

    def check_storage(self, storage: Path) -> None:
        """Every live node (and every node that joins later) writes and reads a probe in
        `storage`; one line naming the first node that cannot."""
        self._storage = storage
        self._probe(storage)

    def _probe(self, storage: Path) -> None:
        ray = self._ray
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in self._probed]
        if not nodes:
            return
        token, driver_file = write_driver_probe(storage)
        probe = ray.remote(num_cpus=0, max_retries=0)(node_probe)
        try:
            refs = {
                n["NodeID"]: probe.options(
                    scheduling_strategy=self._on_node(n["NodeID"], False)
                ).remote(str(storage), str(driver_file), token, n["NodeID"])
                for n in nodes
            }
            # Every answer first (each node's probe file read back and removed), then refuse.
            why = {i: self._probe_answer(ref) or check_node_probe(driver_file, i)
                   for i, ref in refs.items()}  # fmt: skip
        finally:
            with contextlib.suppress(OSError):
                driver_file.unlink()
        for n in nodes:
            if why[n["NodeID"]] is not None:
                raise StudyError(
                    f"storage {storage}: node {n.get('NodeManagerAddress', '?')} "
                    f"({n['NodeID'][:12]}) {why[n['NodeID']]}; on Ray, storage must be a "
                    "folder that every node sees (a shared file system)"
                )
            self._probed.add(n["NodeID"])

    def _probe_answer(self, ref: Any) -> str | None:
        ray = self._ray
        try:
            return ray.get(ref, timeout=PROBE_SECONDS)
        except ray.exceptions.GetTimeoutError:
            return f"did not answer the storage probe within {PROBE_SECONDS:g} s"
        except ray.exceptions.RayError as exc:
            return f"could not run the storage probe ({' '.join(str(exc).split())[:200]})"

    def submit(self, task: TrialTask) -> None:
        """Start one Ray task."""
        self._refs[self._remote.remote(task, self._inbox)] = task.id
        self._asking |= task.ask

    def wait(self, timeout: float) -> list[Event]:
        """Epoch reports, then the outcomes of the tasks that finished within `timeout`
        (returning early at the first report when trials wait for verdicts)."""
        ray = self._ray
        ready: list[Any] = []
        reports: list[EpochReport] = []
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            step = min(left, VERDICT_POLL_SECONDS * 2) if self._asking else left
            if self._refs:
                ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=step)
                if ready:
                    ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
            else:
                time.sleep(step)
            reports += self._reports()
            if ready or reports or time.monotonic() >= deadline:
                break
        out: list[Event] = list(reports)
        for ref in ready:
            trial_id = self._refs.pop(ref)
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # worker or node died, task cancelled
                text = " ".join(str(exc).split())[:500]
                out.append(TrialOutcome(trial_id, None, f"Ray task failed: {text}"))
        return out

    def answer(self, verdict: Verdict) -> None:
        """Leave a verdict in the inbox, where its trial looks for it."""
        self._inbox.answer.remote(verdict)

    def _reports(self) -> list[EpochReport]:
        ray = self._ray
        try:
            return ray.get(self._inbox.drain.remote(), timeout=30)
        except ray.exceptions.RayError:  # the inbox is gone: a new one for the next tasks
            self._inbox = ray.remote(num_cpus=0)(_Inbox).remote()
            return []

    def cancel(self, trial_id: int) -> None:
        """Stop the task running `trial_id` (its outcome is dropped)."""
        for ref, tid in list(self._refs.items()):
            if tid == trial_id:
                with contextlib.suppress(Exception):  # already finished or gone
                    self._ray.cancel(ref, force=True)
                del self._refs[ref]

    def close(self) -> None:
        """Cancel running tasks; shut Ray down if this pool started it."""
        for ref in list(self._refs):
            with contextlib.suppress(Exception):  # already finished or gone
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        inbox = getattr(self, "_inbox", None)
        if inbox is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(inbox)
        if self._started:
            self._ray.shutdown()
            self._started = False
