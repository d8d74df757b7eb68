"""One trial, as a worker runs it: rebuild the design and recipe, train, return the result.

Tasks and outcomes are plain frozen dataclasses of JSON-able values, so they cross process
and Ray boundaries unchanged. A trial that raises returns its message (the trial failed);
only the driver turns outcomes into database rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 2000


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to train one design."""

    id: int
    spec: Mapping[str, Any]  # spec fields of the design
    recipe: Mapping[str, Any]  # the full recipe of this trial (search fields applied)
    data: Mapping[str, Any]  # the data spec, root resolved
    threads: int  # torch threads
    device: str | None = None  # None: the trainer's choice (CUDA, then MPS, then CPU)


@dataclass(frozen=True)
class TrialOutcome:
    """A finished attempt: the trainer's result (as_dict), or why it failed."""

    id: int
    result: Mapping[str, Any] | None
    message: str | None  # one line when the trial failed


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


def run_trial(task: TrialTask) -> TrialOutcome:
    """Train one design; every exception becomes a failed outcome with its message."""
    try:
        from ..core.spec import spec_from_dict
        from .data import DataSpec
        from .recipe import load_recipe
        from .trainer import train

        spec = spec_from_dict(dict(task.spec), f"trial {task.id}")
        recipe = load_recipe(dict(task.recipe))
        data = DataSpec.model_validate(dict(task.data))
        result = train(spec, recipe, data, device=task.device, threads=task.threads)
        return TrialOutcome(task.id, result.as_dict(), None)
    except Exception as exc:  # the trial failed; the driver records why and may retry it
        return TrialOutcome(task.id, None, one_line(exc))
