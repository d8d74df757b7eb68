"""A training run's folder: its files, its identity, its lock, and its results read back safely.

The folder `regnet-space train -o DIR` writes and every trial of a study trains into:
run.json (what makes the run this run: spec, recipe, data), spec.yaml, recipe.yaml,
metrics.jsonl (one line per finished epoch), checkpoint.pt (the last finished epoch),
model.safetensors (the final weights) and result.json (written last: the run is finished).
One process at a time trains into a folder: it holds `.regnet-space-lock` (an advisory lock
the kernel drops when the process dies, with the holder's host and pid inside).
No torch here: the driver and `study best` use these paths without importing it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..core.spec import Spec
from ..infra.atomic import TMP_PREFIX
from ..infra.errors import RegNetSpaceError
from ..infra.parsing import parse_json
from ..infra.paths import check_folder
from ..infra.reading import open_regular
from .data import DataSpec
from .errors import StudyError
from .recipe import Recipe

try:  # advisory locking; absent on Windows, where one writer per folder is up to the user
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".regnet-space-lock"
MAX_RESULT_BYTES = 64 << 20  # a result.json of a million epochs


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch: mean training loss, test top-1 error (%), lr at its end, time, speed."""

    epoch: int
    train_loss: float
    test_error: float
    lr: float
    seconds: float
    images_per_second: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, epoch: int) -> EpochMetrics:
        """Checked inverse of as_dict: epoch `epoch`, finite numbers; ValueError otherwise."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError(f"epoch {epoch}: expected the fields of an epoch record")
        if type(data["epoch"]) is not int or data["epoch"] != epoch:
            raise ValueError(f"epoch {epoch}: record of epoch {data['epoch']!r}")
        for key, value in data.items():
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ValueError(f"epoch {epoch}: {key} is {value!r}, not a finite number")
        return cls(**{k: (v if k == "epoch" else float(v)) for k, v in data.items()})


def read_curve(data: Any, epochs: int) -> list[EpochMetrics]:
    """A list of epoch records 1, 2, ..., at most `epochs` of them; ValueError otherwise."""
    if not isinstance(data, list) or len(data) > epochs:
        raise ValueError(f"expected a list of at most {epochs} epoch records")
    return [EpochMetrics.from_dict(m, i + 1) for i, m in enumerate(data)]


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one training run."""

    error: float  # final top-1 error on the test split, percent
    epochs: int
    curve: tuple[EpochMetrics, ...]
    train_seconds: float  # the epochs' wall time (training and their evaluations)
    images_per_second: float  # training images per second of the training loops
    peak_memory_bytes: int  # CUDA max allocated, or the process's peak RSS on CPU
    device: str
    host: str
    synthetic: bool  # trained on random tensors: a speed measurement, not an error
    stopped: bool = False  # ended early because the on_epoch hook asked (a scheduler)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields (the curve as a list of dicts)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["curve"] = [m.as_dict() for m in self.curve]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        """The inverse of as_dict; ValueError for anything as_dict does not write."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        if not names - {"stopped"} <= set(data) <= names:
            raise ValueError(f"expected the keys {sorted(names)}")
        curve = tuple(read_curve(data["curve"], len(data["curve"])))
        out = cls(**{**data, "curve": curve})
        kinds = {"error": float, "train_seconds": float, "images_per_second": float}
        for key, kind in {**kinds, "epochs": int, "peak_memory_bytes": int}.items():
            value = getattr(out, key)
            if type(value) not in ((int, float) if kind is float else (int,)):
                raise ValueError(f"{key} is {value!r}")
        if not (isinstance(out.device, str) and isinstance(out.host, str)):
            raise ValueError("device and host must be text")
        if not all(isinstance(getattr(out, k), bool) for k in ("synthetic", "stopped")):
            raise ValueError("synthetic and stopped must be true or false")
        if out.epochs != len(curve) or not curve or out.error != curve[-1].test_error:
            raise ValueError("epochs and error do not match the curve")
        return out


@dataclass(frozen=True)
class RunFiles:
    """The files of a run folder; `run.json` names the run, `result.json` marks it finished."""

    folder: Path

    @property
    def identity(self) -> Path:
        return self.folder / "run.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.folder / "result.json"

    @property
    def spec(self) -> Path:
        return self.folder / "spec.yaml"

    @property
    def recipe(self) -> Path:
        return self.folder / "recipe.yaml"

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_NAME

    def weights(self, safetensors: bool) -> Path:
        return self.folder / ("model.safetensors" if safetensors else "model.pt")

    def ours(self) -> tuple[Path, ...]:
        """Every file a run writes (removed by a forced restart, nothing else is)."""
        names = ("checkpoint", "metrics", "result", "spec", "recipe", "identity")
        return (*(getattr(self, n) for n in names), self.weights(True), self.weights(False))


def run_identity(spec: Spec, recipe: Recipe, data: DataSpec) -> dict[str, Any]:
    """What makes two runs the same run: the spec, the recipe and the data."""
    return {
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "recipe": recipe.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
    }


def read_json_file(path: Path, what: str, limit: int = MAX_RESULT_BYTES) -> Any:
    """A JSON file of a run folder, read safely (regular file, bounded); StudyError otherwise."""
    try:
        with open_regular(path, what, error=StudyError) as fh:
            raw = fh.read(limit + 1)
        if len(raw) > limit:
            raise StudyError(f"{path}: larger than {limit} bytes, not a {what}")
        return parse_json(raw.decode("utf-8"), str(path), error=StudyError)
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text, not a {what}") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}") from None
    except RegNetSpaceError as exc:
        raise StudyError(str(exc)) from None


def read_result(files: RunFiles) -> TrainResult:
    """A finished run's result.json; one line naming the file when it is not one."""
    data = read_json_file(files.result, "result file")
    try:
        return TrainResult.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{files.result}: not a training result: {exc}") from None


def _run_names(folder: Path) -> list[str]:
    """Names in a folder other than its lock and temp files."""
    return [n for n in os.listdir(folder) if n != LOCK_NAME and not n.startswith(TMP_PREFIX)]


def check_run_dir(folder: Path, identity: dict[str, Any], force: bool) -> str:
    """`new`, `resume` or `done`: what training into `folder` means; refuses another run's.

    Checks that the folder (or its parent, for a new one) can be written unless it is done.
    """
    files = RunFiles(folder)
    try:
        is_dir, exists = folder.is_dir(), folder.exists() or folder.is_symlink()
    except OSError as exc:
        raise StudyError(f"{folder}: {(exc.strerror or str(exc)).lower()}") from None
    if exists and not is_dir:
        raise StudyError(f"{folder}: exists and is not a directory")
    if not exists:
        if not folder.parent.is_dir():
            raise StudyError(f"{folder.parent}: no such directory")
        check_folder(folder, force=True, shared=True)  # the parent must be writable
        return "new"
    state = "new"
    if files.identity.exists():
        if read_json_file(files.identity, "run identity") == identity:
            state = "done" if files.result.exists() else "resume"
        elif not force:
            raise StudyError(
                f"{folder}: holds a run of another spec, recipe or data (use --force to "
                "start over there)"
            )
    elif _run_names(folder) and not force:
        raise StudyError(f"{folder}: exists, is not empty and is not a run folder (use --force)")
    if state != "done":
        check_folder(folder, force=True, shared=True)
    return state


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder: host, process id, and since when (unix time)."""

    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def read_holder(folder: Path) -> Holder | None:
    """The holder recorded in a run folder's lock file (the last one, live or not)."""
    try:
        data = read_json_file(RunFiles(folder).lock, "lock file", 4096)
        return Holder(str(data["host"]), int(data["pid"]), float(data["since"]))
    except (StudyError, KeyError, TypeError, ValueError):
        return None


@contextlib.contextmanager
def hold_run_dir(folder: Path, wait: float = 0.0) -> Iterator[Holder]:
    """Hold a run folder (created if new) for this process; waits up to `wait` seconds for
    another holder to let go, then refuses with one line naming it."""
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(RunFiles(folder).lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StudyError(f"{folder}: cannot write: {(exc.strerror or str(exc)).lower()}") from None
    try:
        _lock(fd, folder, wait)
        me = Holder(socket.gethostname(), os.getpid(), time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        yield me
    finally:
        os.close(fd)  # drops the lock; the file stays (removing it would race a new holder)


def _lock(fd: int, folder: Path, wait: float) -> None:
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        except OSError as exc:
            raise StudyError(f"{folder}: cannot lock: {(exc.strerror or exc)}") from None
    holder = read_holder(folder)
    who = f" by {holder.describe()}" if holder is not None else ""
    raise StudyError(f"{folder}: held{who}: another run is training into this folder")
