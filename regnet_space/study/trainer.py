"""Training one design under one recipe on one data set: the unit of work of a study.

pycls's training loop, as its CIFAR and ImageNet RegNet configs use it: SGD with momentum
(Nesterov optional), the learning rate scaled by batch / 128, a half-period cosine schedule
with a linear warmup (here evaluated at fractional epochs, every step), label smoothing,
mixup, an optional EMA of the weights, weight decay with an optional separate decay for BN
weights and biases, autocast (bf16/fp16) on CUDA, channels-last and torch.compile.

Every random draw comes from the recipe seed: the init from the seed, each epoch's order,
crops, flips and mixup from (seed, epoch). On the CPU with a fixed thread count a run is
therefore reproducible, and a run resumed from an epoch checkpoint ends exactly as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import SpecError
from ..core.generator import to_explicit
from ..core.spec import Spec, dump_spec, spec_from_dict
from ..infra.outputs import atomic_write_text, atomic_write_with
from ..infra.paths import check_target
from ..nn.model import RegNetForImageClassification, build_model
from .data import DataSpec, check_data, num_classes
from .errors import StudyError
from .loaders import Loader, epoch_seed, make_loader
from .recipe import Recipe, dump_recipe
from .runfolder import (
    EpochMetrics,
    RunFiles,
    TrainResult,
    check_run_dir,
    hold_run_dir,
    read_curve,
    read_result,
    run_identity,
)

__all__ = [
    "EpochMetrics",
    "FolderPolicy",
    "RunFiles",
    "TrainResult",
    "check_run_dir",
    "load_weights",
    "resolve_device",
    "run_identity",
    "spec_for_data",
    "train",
]


# ---------------------------------------------------------------------------------------------
# Inputs


def spec_for_data(spec: Spec, data: DataSpec) -> Spec:
    """The spec with num_classes set to the data set's class count, validated."""
    n = num_classes(data)
    if spec.num_classes == n:
        return spec
    try:
        return spec_from_dict(
            {**spec.model_dump(exclude_unset=True), "num_classes": n}, f"spec {spec.name}"
        )
    except SpecError as exc:
        raise StudyError(str(exc)) from None


def resolve_device(device: str | None) -> torch.device:
    """The device named (`auto` or None: CUDA, then MPS, then CPU), checked to exist."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise StudyError(
            f"device: unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise StudyError(f"device: {device} requested but CUDA is not available")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise StudyError(f"device: {device}: only {torch.cuda.device_count()} CUDA devices")
        return torch.device("cuda", index)
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise StudyError(f"device: {device} requested but MPS is not available")
        return dev
    if dev.type != "cpu":
        raise StudyError(f"device: {device!r} is not supported (auto, cpu, cuda, cuda:N, mps)")
    return dev


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise StudyError(f"threads: must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Pieces of the loop


class _Logits(nn.Module):
    """The classifier returning its logits tensor only (what torch.compile and the loss need)."""

    def __init__(self, model: RegNetForImageClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.model.regnet(x, return_dict=True).pooler_output
        return self.model.classifier(pooled)


def _init_classifier(model: RegNetForImageClassification) -> None:
    """pycls's classifier init, normal(0, 0.01) weights and zero bias: small initial logits,
    so that deep designs do not start with a loss of 10 (the convs keep the model's init)."""
    for m in model.classifier.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            nn.init.zeros_(m.bias)


def _param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """One group, or two when BN weights and biases have their own decay (pycls custom decay)."""
    if recipe.bn_weight_decay is None:
        return [{"params": list(model.parameters()), "weight_decay": recipe.weight_decay}]
    bn_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    }
    special, regular = [], []
    for name, p in model.named_parameters():
        (special if id(p) in bn_ids or name.endswith(".bias") else regular).append(p)
    return [
        {"params": regular, "weight_decay": recipe.weight_decay},
        {"params": special, "weight_decay": recipe.bn_weight_decay},
    ]


class _Ema:
    """Exponential moving average of a model's whole state (weights and BN statistics)."""

    def __init__(self, model: nn.Module, recipe: Recipe) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = float(recipe.ema_decay or 0.0)
        self.every = recipe.ema_every
        self.warmup = recipe.warmup_epochs

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, epoch: float) -> None:
        if (step + 1) % self.every:
            return
        src = model.state_dict()
        # During warmup the weights move too fast to average: copy them (pycls).
        weight = 1.0 if epoch < self.warmup else 1.0 - self.decay
        floats_dst, floats_src = [], []
        for name, t in self.model.state_dict().items():
            if t.is_floating_point():
                floats_dst.append(t)
                floats_src.append(src[name])
            else:
                t.copy_(src[name])
        torch._foreach_lerp_(floats_dst, floats_src, weight)


class _Progress:
    """One line per epoch on a terminal: loss, images/s and ETA, redrawn at most 4x a second."""

    def __init__(self, stream: TextIO | None, epochs: int, steps: int) -> None:
        self.stream, self.epochs, self.steps = stream, epochs, steps
        self.last = 0.0

    def step(self, epoch: int, step: int, loss: Tensor, images: int, start: float) -> None:
        now = time.perf_counter()
        if self.stream is None or (now - self.last < 0.25 and step + 1 < self.steps):
            return
        self.last = now
        done = (step + 1) / self.steps
        elapsed = now - start
        rate = images / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (1 - done)
        bar = "#" * int(20 * done) + "-" * (20 - int(20 * done))
        self.stream.write(
            f"\repoch {epoch + 1}/{self.epochs} [{bar}] loss {loss.item():.4f} "
            f"{rate:,.0f} img/s ETA {eta:4.0f}s "
        )
        self.stream.flush()

    def end(self, m: EpochMetrics) -> None:
        if self.stream is None:
            return
        self.stream.write(
            f"\repoch {m.epoch}/{self.epochs} loss {m.train_loss:.4f} test error "
            f"{m.test_error:.2f} % {m.images_per_second:,.0f} img/s {m.seconds:.1f}s"
            + " " * 20
            + "\n"
        )
        self.stream.flush()


def _autocast(device: torch.device, recipe: Recipe) -> Any:
    if device.type != "cuda" or recipe.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if recipe.precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


@torch.no_grad()
def evaluate(net: nn.Module, loader: Loader, device: torch.device, recipe: Recipe) -> float:
    """Top-1 error (%) on the test split."""
    net.eval()
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    for x, y in loader.test_batches():
        if recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, recipe):
            logits = net(x)
        wrong += (logits.argmax(1) != y).sum()
        total += len(y)
    return 100.0 * float(wrong.item()) / max(1, total)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _summarize(
    curve: list[EpochMetrics], device: torch.device, synthetic: bool, n: int, stopped: bool
) -> TrainResult:
    loop_seconds = sum(n / m.images_per_second for m in curve if m.images_per_second > 0)
    return TrainResult(
        error=curve[-1].test_error,
        epochs=len(curve),
        curve=tuple(curve),
        train_seconds=sum(m.seconds for m in curve),
        images_per_second=(n * len(curve) / loop_seconds) if loop_seconds > 0 else 0.0,
        peak_memory_bytes=_peak_memory(device),
        device=str(device),
        host=socket.gethostname(),
        synthetic=synthetic,
        stopped=stopped,
    )


# ---------------------------------------------------------------------------------------------
# The run folder's files, as the loop writes and reads them


def _write_metrics(files: RunFiles, curve: list[EpochMetrics]) -> None:
    text = "".join(json.dumps(m.as_dict()) + "\n" for m in curve)
    atomic_write_text(files.metrics, text, force=True)


def _save_weights(files: RunFiles, model: nn.Module) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        atomic_write_with(files.weights(False), lambda tmp: torch.save(state, tmp), True)
        return
    atomic_write_with(files.weights(True), lambda tmp: save_file(state, tmp), True)


def _start_folder(files: RunFiles, identity: dict[str, Any], spec: Spec, recipe: Recipe) -> None:
    """A new run in the folder: the previous run's files go (only regular files and links to
    them: a FIFO, device or folder under one of our names is refused), then the identity."""
    seen: set[Path] = set()
    ours = [p for p in files.ours() if p.exists() or p.is_symlink()]
    for path in ours:
        check_target(path, force=True, _seen=seen)
    for path in ours:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    atomic_write_text(files.identity, json.dumps(identity, indent=2) + "\n", True)
    atomic_write_text(files.spec, dump_spec(to_explicit(spec)), True)
    atomic_write_text(files.recipe, dump_recipe(recipe), True)


CHECKPOINT_KEYS = frozenset({"epoch", "model", "optimizer", "ema", "scaler", "curve"})


def _read_checkpoint(path: Path, recipe: Recipe) -> dict[str, Any]:
    """An epoch checkpoint of this trainer, read with weights_only and checked; StudyError
    naming the file for anything else (garbage, a truncated file, a pickle that runs code)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise StudyError(f"{path}: not a regular file, expected an epoch checkpoint")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except StudyError:
        raise
    except Exception as exc:  # torch's unpickler raises many types on a damaged file
        raise StudyError(f"{path}: not a readable checkpoint ({_reason(exc)})") from None
    if not isinstance(ckpt, dict) or set(ckpt) != CHECKPOINT_KEYS:
        raise StudyError(f"{path}: not an epoch checkpoint of `regnet-space train`")
    epoch = ckpt["epoch"]
    if type(epoch) is not int or not 0 < epoch <= recipe.epochs:
        raise StudyError(f"{path}: epoch {epoch!r} is not one of the recipe's 1..{recipe.epochs}")
    try:
        curve = read_curve(ckpt["curve"], recipe.epochs)
    except ValueError as exc:
        raise StudyError(f"{path}: bad curve: {exc}") from None
    if len(curve) != epoch:
        raise StudyError(f"{path}: {len(curve)} epoch records for epoch {epoch}")
    ckpt["curve"] = curve
    return ckpt


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# train(): setup, resume, epochs, checkpoints


Decision = Literal["continue", "stop"]
# Called after each finished (and checkpointed) epoch; "stop" ends training after it.
OnEpoch = Callable[[EpochMetrics], "Decision | None"]


@dataclass(frozen=True)
class FolderPolicy:
    """What a run folder keeps when the run ends, and how long to wait for its lock."""

    keep_checkpoint: bool = True  # the last epoch checkpoint (`train -o` keeps it)
    keep_weights: bool = True  # model.safetensors
    lock_wait: float = 0.0  # seconds to wait for another process training into the folder


@dataclass
class _Session:
    """The live objects of one run: model, optimizer, loader, and the curve so far."""

    recipe: Recipe
    device: torch.device
    model: RegNetForImageClassification
    net: nn.Module
    eval_net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: _Ema | None
    loader: Loader
    curve: list[EpochMetrics]

    @property
    def fp16(self) -> bool:
        return self.device.type == "cuda" and self.recipe.precision == "fp16"


def train(
    spec: Spec,
    recipe: Recipe,
    data: DataSpec,
    *,
    device: str | None = None,
    threads: int | None = None,
    run_dir: Path | None = None,
    progress: bool = False,
    force: bool = False,
    on_epoch: OnEpoch | None = None,
    policy: FolderPolicy = FolderPolicy(),
) -> TrainResult:
    """Train `spec` under `recipe` on `data`; return the final test error and the curve.

    `run_dir`: write epoch checkpoints, metrics.jsonl, the weights, spec and recipe there, and
    resume from its last checkpoint (another run's folder is refused unless `force`); one
    process at a time trains into a folder. `on_epoch` sees every finished epoch and may
    return "stop" to end training after it (the result is then marked `stopped`); a resumed
    run shows it the epoch it resumes from first.
    Bad input raises StudyError (or another RegNetSpaceError); other exceptions mean that the
    trial itself failed (for example a diverged loss or out of memory). Threads, RNG state and
    cuDNN's benchmark flag are restored when it returns.
    """
    if not isinstance(recipe, Recipe):
        raise StudyError(f"recipe: expected a Recipe, got {type(recipe).__name__}")
    data = check_data(data)
    spec = spec_for_data(spec, data)
    dev = resolve_device(device)
    identity = run_identity(spec, recipe, data)
    stream = sys.stderr if progress else None
    with _torch_threads(threads), _cudnn_benchmark(dev):
        if run_dir is None:
            session = _setup(spec, recipe, data, dev)
            return _loop(session, None, data, policy, on_epoch, stream)
        files = RunFiles(Path(run_dir))
        state = check_run_dir(files.folder, identity, force)
        if state == "done":
            return _finished(files, policy)
        with hold_run_dir(files.folder, policy.lock_wait):
            state = check_run_dir(files.folder, identity, force)  # as it is now we hold it
            if state == "done":
                return _finished(files, policy)
            session = _setup(spec, recipe, data, dev)
            if state == "resume" and files.checkpoint.exists():
                _resume(session, _read_checkpoint(files.checkpoint, recipe), files.checkpoint)
            else:  # new, or killed before its first epoch checkpoint
                _start_folder(files, identity, spec, recipe)
            _write_metrics(files, session.curve)
            return _loop(session, files, data, policy, on_epoch, stream)


def _finished(files: RunFiles, policy: FolderPolicy) -> TrainResult:
    """A finished run's result; an epoch checkpoint the policy drops is removed (a run killed
    between its result and that removal)."""
    result = read_result(files)
    if not policy.keep_checkpoint:
        with contextlib.suppress(FileNotFoundError):
            files.checkpoint.unlink()
    return result


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cuDNN picks its fastest kernels for the fixed shapes of a CUDA run; restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _setup(spec: Spec, recipe: Recipe, data: DataSpec, device: torch.device) -> _Session:
    """Model (initialized from the recipe seed), optimizer, scaler, EMA and the data loader."""
    # The init comes from the recipe seed alone; the caller's global RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        built = build_model(spec, True, zero_init_last_bn=recipe.zero_init_last_bn)
        model = cast(RegNetForImageClassification, built)  # with_head=True
        _init_classifier(model)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = make_loader(data, recipe, spec.num_channels, device)
    optimizer = torch.optim.SGD(
        _param_groups(model, recipe),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )
    fp16 = device.type == "cuda" and recipe.precision == "fp16"
    ema = _Ema(model, recipe) if recipe.ema_decay is not None else None
    net: nn.Module = _Logits(model)
    if recipe.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    return _Session(
        recipe=recipe,
        device=device,
        model=model,
        net=net,
        eval_net=_Logits(ema.model) if ema is not None else net,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda", enabled=fp16),
        ema=ema,
        loader=loader,
        curve=[],
    )


def _resume(session: _Session, ckpt: dict[str, Any], path: Path) -> None:
    """Load a checked checkpoint into the session; a state that does not fit is one line."""
    try:
        session.model.load_state_dict(ckpt["model"])
        session.optimizer.load_state_dict(ckpt["optimizer"])
        if session.ema is not None:
            if ckpt["ema"] is None:
                raise ValueError("no EMA weights, but the recipe has an EMA")
            session.ema.model.load_state_dict(ckpt["ema"])
        if ckpt["scaler"]:
            session.scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise StudyError(f"{path}: does not fit this run ({_reason(exc)})") from None
    session.curve = list(ckpt["curve"])


def _loop(
    session: _Session,
    files: RunFiles | None,
    data: DataSpec,
    policy: FolderPolicy,
    on_epoch: OnEpoch | None,
    stream: TextIO | None,
) -> TrainResult:
    """Train the remaining epochs, checkpointing each; then the weights and the result."""
    recipe, loader = session.recipe, session.loader
    bar = _Progress(stream, recipe.epochs, loader.steps_per_epoch())
    stopped = False
    start = len(session.curve)
    if start and on_epoch is not None and start < recipe.epochs:
        # A resumed run shows the hook the epoch it resumes from first: a decision on it that
        # the interrupted process did not live to act on is made (or repeated) now.
        stopped = on_epoch(session.curve[-1]) == "stop"
    for epoch in range(start, recipe.epochs if not stopped else start):
        metrics = _epoch(session, epoch, bar)
        session.curve.append(metrics)
        bar.end(metrics)
        if files is not None:
            # The last epoch's checkpoint is only worth writing if the folder keeps it: a run
            # killed before its result then redoes that epoch, to the same numbers.
            last = epoch + 1 == recipe.epochs and not policy.keep_checkpoint
            _checkpoint(session, files, write_state=not last)
        decision = on_epoch(metrics) if on_epoch is not None else None
        if decision == "stop" and epoch + 1 < recipe.epochs:
            stopped = True
            break
    images_per_epoch = loader.steps_per_epoch() * min(recipe.batch_size, loader.n_train)
    result = _summarize(
        session.curve, session.device, data.name == "synthetic", images_per_epoch, stopped
    )
    if files is not None:
        if policy.keep_weights:
            _save_weights(files, session.ema.model if session.ema is not None else session.model)
        atomic_write_text(files.result, json.dumps(result.as_dict(), indent=2) + "\n", True)
        if not policy.keep_checkpoint:
            with contextlib.suppress(FileNotFoundError):
                files.checkpoint.unlink()
    return result


def _checkpoint(session: _Session, files: RunFiles, write_state: bool = True) -> None:
    """The state after the last finished epoch (unless not `write_state`), and the metrics
    so far."""
    if not write_state:
        _write_metrics(files, session.curve)
        return
    ckpt = {
        "epoch": len(session.curve),
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "ema": session.ema.model.state_dict() if session.ema is not None else None,
        "scaler": session.scaler.state_dict() if session.fp16 else None,
        "curve": [m.as_dict() for m in session.curve],
    }
    atomic_write_with(files.checkpoint, lambda tmp: torch.save(ckpt, tmp), True)
    _write_metrics(files, session.curve)


def _epoch(session: _Session, epoch: int, bar: _Progress) -> EpochMetrics:
    """One epoch of training (every draw from the seed and the epoch) and its evaluation."""
    recipe, device = session.recipe, session.device
    session.net.train()
    t0 = time.perf_counter()
    steps = session.loader.steps_per_epoch()
    mix = np.random.default_rng(epoch_seed(recipe.seed, epoch, 2))
    mix_perm = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, 3))
    loss_sum = torch.zeros((), device=device)
    images = 0
    lr = recipe.lr
    for step, (x, y) in enumerate(session.loader.train_batches(epoch)):
        lr = recipe.lr_at(epoch + step / steps)
        loss = _step(session, x, y, lr, mix, mix_perm)
        if session.ema is not None:
            session.ema.update(session.model, epoch * steps + step, epoch + (step + 1) / steps)
        loss_sum += loss.detach().float() * len(y)
        images += len(y)
        bar.step(epoch, step, loss, images, t0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loop_seconds = time.perf_counter() - t0
    train_loss = float(loss_sum.item()) / max(1, images)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training diverged: loss is {train_loss} in epoch {epoch + 1}")
    error = evaluate(session.eval_net, session.loader, device, recipe)
    return EpochMetrics(
        epoch=epoch + 1,
        train_loss=train_loss,
        test_error=error,
        lr=lr,
        seconds=time.perf_counter() - t0,
        images_per_second=images / loop_seconds if loop_seconds > 0 else 0.0,
    )


def _step(
    session: _Session,
    x: Tensor,
    y: Tensor,
    lr: float,
    mix: np.random.Generator,
    mix_perm: torch.Generator,
) -> Tensor:
    """One optimizer step (mixup, autocast, loss scaling); returns the loss."""
    recipe, device = session.recipe, session.device
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    if recipe.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lam = 1.0
    if recipe.mixup_alpha > 0:
        lam = float(mix.beta(recipe.mixup_alpha, recipe.mixup_alpha))
        perm = torch.randperm(len(y), generator=mix_perm).to(device)
        x = lam * x + (1.0 - lam) * x[perm]
    with _autocast(device, recipe):
        logits = session.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        if lam < 1.0:
            loss = lam * loss + (1.0 - lam) * F.cross_entropy(
                logits, y[perm], label_smoothing=recipe.label_smoothing
            )
    session.optimizer.zero_grad(set_to_none=True)
    session.scaler.scale(loss).backward()
    session.scaler.step(session.optimizer)
    session.scaler.update()
    return loss


def load_weights(run_dir: str | Path) -> RegNetForImageClassification:
    """The trained model of a run folder (or a `study best` folder): spec.yaml + weights."""
    from ..core.reader import load_spec

    folder = Path(run_dir)
    files = RunFiles(folder)
    model = cast(RegNetForImageClassification, build_model(load_spec(files.spec), True))
    path = files.weights(True) if files.weights(True).exists() else files.weights(False)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise StudyError(f"{folder}: no model.safetensors (weights not kept)") from None
    except Exception as exc:  # safetensors and torch raise their own types on a bad file
        raise StudyError(f"{path}: not the weights of {files.spec} ({_reason(exc)})") from None
    return model.eval()


def evaluate_run(
    run_dir: str | Path, data: DataSpec, *, device: str | None = None, threads: int | None = None
) -> float:
    """Top-1 error (%) of a run folder's weights on `data`'s test split, at its recipe's test
    size: what the run recorded as its final error, measured again."""
    from ..core.reader import load_spec
    from .recipe import load_recipe

    folder = Path(run_dir)
    recipe = load_recipe(RunFiles(folder).recipe)
    spec = load_spec(RunFiles(folder).spec)
    model = load_weights(folder)
    data = check_data(data)
    dev = resolve_device(device)
    with _torch_threads(threads):
        model.to(dev)
        loader = make_loader(data, recipe, spec.num_channels, dev)
        return evaluate(_Logits(model), loader, dev, recipe)
