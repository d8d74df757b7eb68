"""One trial, as a worker runs it: rebuild the design and recipe, train into its run folder.

Tasks, epoch reports, verdicts and outcomes are plain frozen dataclasses of JSON-able values,
so they cross process and Ray boundaries unchanged. A trial trains into its run folder on the
study's storage, so an attempt that is interrupted (a killed worker, a lost node, a timeout)
resumes from its last finished epoch wherever it runs next. A trial that raises returns its
message (the trial failed); only the driver turns reports and outcomes into database rows.
Under a scheduler (`ask`), a trial waits after each reported epoch for the driver's verdict,
so that it stops exactly after the epoch the decision was made on.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_MESSAGE = 2000
# A retried attempt waits this long for the previous one's process to let go of the run
# folder (a worker still dying, a network file system's lock of a lost node expiring).
LOCK_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to train one design."""

    id: int
    spec: Mapping[str, Any]  # spec fields of the design
    recipe: Mapping[str, Any]  # the full recipe of this trial (search fields applied)
    data: Mapping[str, Any]  # the data spec, root resolved
    threads: int  # torch threads
    device: str | None = None  # None: the trainer's choice (CUDA, then MPS, then CPU)
    run_dir: str | None = None  # the trial's run folder (None: train without one)
    keep_weights: bool = True  # write model.safetensors when the trial ends
    ask: bool = False  # wait for the driver's verdict after each epoch (a scheduler runs)


@dataclass(frozen=True)
class EpochReport:
    """A running trial finished an epoch (sent to the driver as it happens)."""

    id: int
    epoch: int
    epochs: int
    error: float  # test top-1 error after this epoch, percent
    train_loss: float
    seconds: float  # since this attempt started
    host: str
    pid: int


@dataclass(frozen=True)
class Verdict:
    """The driver's answer to one reported epoch of a trial that asks: stop after it or not."""

    id: int
    epoch: int
    stop: bool


@dataclass(frozen=True)
class TrialOutcome:
    """A finished attempt: the trainer's result (as_dict), or why it failed."""

    id: int
    result: Mapping[str, Any] | None
    message: str | None  # one line when the trial failed
    host: str | None = None  # where the attempt ran, when known


Report = Callable[[EpochReport], None]
Ask = Callable[[int, int], bool]  # (trial id, epoch) -> stop: blocks until the driver answers


def one_line(exc: BaseException) -> str:
    """An exception as one bounded line: `Type: message`."""
    text = " ".join(str(exc).split()) or "(no message)"
    name = type(exc).__name__
    line = text if name in ("StudyError",) else f"{name}: {text}"
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def pick_device(worker_index: int) -> str | None:
    """A local worker's device: CUDA device worker_index mod count when CUDA is there."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker_index % torch.cuda.device_count()}"
    return None


def run_trial(
    task: TrialTask, report: Report | None = None, ask: Ask | None = None
) -> TrialOutcome:
    """Train one design, sending each finished epoch to `report` (and, when the task asks,
    stopping after it if `ask` says so); every exception becomes a failed outcome with its
    message."""
    host = socket.gethostname()
    try:
        from ..core.spec import spec_from_dict
        from .data import DataSpec
        from .recipe import load_recipe
        from .trainer import FolderPolicy, train

        spec = spec_from_dict(dict(task.spec), f"trial {task.id}")
        recipe = load_recipe(dict(task.recipe))
        data = DataSpec.model_validate(dict(task.data))
        start = time.time()

        def on_epoch(m: Any) -> str | None:
            if report is not None:
                seconds = time.time() - start
                report(EpochReport(task.id, m.epoch, recipe.epochs, m.test_error, m.train_loss,
                                   seconds, host, os.getpid()))  # fmt: skip
            if task.ask and ask is not None and ask(task.id, m.epoch):
                return "stop"
            return None

        result = train(
            spec,
            recipe,
            data,
            device=task.device,
            threads=task.threads,
            run_dir=Path(task.run_dir) if task.run_dir is not None else None,
            on_epoch=on_epoch,
            policy=FolderPolicy(
                keep_checkpoint=False, keep_weights=task.keep_weights, lock_wait=LOCK_WAIT_SECONDS
            ),
        )
        return TrialOutcome(task.id, result.as_dict(), None, host)
    except Exception as exc:  # the trial failed; the driver records why and may retry it
        return TrialOutcome(task.id, None, one_line(exc), host)
