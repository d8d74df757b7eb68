"""Where trials run: a pool of long-lived local worker processes, or Ray tasks.

Both executors have the same small interface: `slots` (trials that can run at once),
`submit(task)`, `wait(timeout)` -> finished outcomes, `close()`. A worker that dies (a crash,
the kernel's out-of-memory killer, a lost Ray node) fails its trial only; the local pool
starts a fresh worker in its place. Workers never touch the database.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import StudyError
from .studyfile import RayExecutor, cores
from .worker import TrialOutcome, TrialTask, pick_device, run_trial

RAY_HINT = "pip install 'regnet-space[ray]' (or pip install -e \".[ray]\" in a checkout)"


class Executor(Protocol):
    """What the driver needs from an executor."""

    slots: int

    def submit(self, task: TrialTask) -> None: ...

    def wait(self, timeout: float) -> list[TrialOutcome]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Local: long-lived spawned worker processes, one pipe each


def _watch_parent(parent: int) -> None:
    """Exit when the driver is gone (kill -9 leaves no one to read our result)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(conn: Any, index: int, threads: int, parent: int) -> None:
    """A worker process: train the tasks sent on `conn`, one at a time, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    os.environ["OMP_NUM_THREADS"] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch  # load it while the driver hands out work

    torch.set_num_threads(threads)
    device = pick_device(index)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if device is not None and task.device is None:
            task = TrialTask(task.id, task.spec, task.recipe, task.data, task.threads, device)
        conn.send(run_trial(task))


@dataclass
class _Worker:
    """One worker process and the trial it is running (mutable driver-side bookkeeping)."""

    index: int
    process: Any
    conn: Any
    task: int | None = None


class LocalPool:
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

    def wait(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes of the trials that finished (or whose worker died) within `timeout`."""
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        objects = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(multiprocessing.connection.wait(objects, timeout))
        out = []
        for w in busy:
            if w.conn in ready:
                try:
                    out.append(w.conn.recv())
                    w.task = None
                    continue
                except (EOFError, OSError):
                    pass
            elif w.process.sentinel not in ready:
                continue
            out.append(self._replace(w))
        return out

    def _replace(self, w: _Worker) -> TrialOutcome:
        """A dead worker fails its trial; a fresh one takes its place."""
        w.process.join(timeout=5)
        code = w.process.exitcode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if code == -signal.SIGKILL:
            why += " (out of memory?)"
        outcome = TrialOutcome(w.task or 0, None, f"worker process died: {why}")
        w.conn.close()
        self._workers[self._workers.index(w)] = self._spawn(w.index)
        return outcome

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


class RayPool:
    """Trials as Ray tasks with the study's CPUs and GPUs per trial.

    Joins the cluster at `address` (`auto`, host:port or ray://), or starts a local one with
    this machine's cores; an already initialized Ray (a notebook, a test) is used as it is.
    """

    def __init__(self, executor: RayExecutor, address: str | None) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = False
        self._refs: dict[Any, int] = {}  # before any close(): it cancels these
        cpus, gpus = executor.cpus_per_trial, executor.gpus_per_trial
        if not ray.is_initialized():
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
                    ray.init(num_cpus=max(cores(), int(cpus)), **options)
            except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
                where = address or "a local Ray"
                raise StudyError(
                    f"cannot start or join {where}: {' '.join(str(exc).split())}"
                ) from None
            self._started = True
        have = ray.cluster_resources()
        slots = int(have.get("CPU", 0) // cpus)
        if gpus:
            slots = min(slots, int(have.get("GPU", 0) // gpus))
        if slots < 1:
            self.close()
            raise StudyError(
                f"the Ray cluster has {have.get('CPU', 0):g} CPU(s) and {have.get('GPU', 0):g} "
                f"GPU(s); a trial asks for {cpus:g} CPU(s) and {gpus:g} GPU(s)"
            )
        self.slots = slots
        # max_retries=0: a dead worker fails the trial; the study's retries decide what next.
        self._remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_trial)

    def submit(self, task: TrialTask) -> None:
        """Start one Ray task."""
        self._refs[self._remote.remote(task)] = task.id

    def wait(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes of the tasks that finished within `timeout`."""
        if not self._refs:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        out = []
        for ref in ready:
            trial_id = self._refs.pop(ref)
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # worker or node died, task cancelled
                text = " ".join(str(exc).split())[:500]
                out.append(TrialOutcome(trial_id, None, f"Ray task failed: {text}"))
        return out

    def close(self) -> None:
        """Cancel running tasks; shut Ray down if this pool started it."""
        for ref in list(self._refs):
            with contextlib.suppress(Exception):  # already finished or gone
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False
