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
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import SpecError
from ..core.generator import to_explicit
from ..core.io import atomic_write_text, atomic_write_with
from ..core.spec import Spec, dump_spec, spec_from_dict
from ..nn.model import RegNetForImageClassification, build_model
from .data import DataSpec, check_data, num_classes
from .errors import StudyError
from .loaders import Loader, epoch_seed, make_loader
from .recipe import Recipe, dump_recipe

__all__ = [
    "EpochMetrics",
    "RunFiles",
    "TrainResult",
    "resolve_device",
    "spec_for_data",
    "train",
]


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

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields (the curve as a list of dicts)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["curve"] = [m.as_dict() for m in self.curve]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        """The inverse of as_dict."""
        curve = tuple(EpochMetrics(**m) for m in data["curve"])
        return cls(**{**data, "curve": curve})


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
# The run folder


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


def check_run_dir(folder: Path, identity: dict[str, Any], force: bool) -> str:
    """`new`, `resume` or `done`: what training into `folder` means; refuses another run's."""
    files = RunFiles(folder)
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"{folder}: exists and is not a directory")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise StudyError(f"{folder.parent}: no such directory")
        return "new"
    if files.identity.is_file():
        try:
            existing = json.loads(files.identity.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        if existing == identity:
            return "done" if files.result.is_file() else "resume"
        if not force:
            raise StudyError(
                f"{folder}: holds a run of another spec, recipe or data (use --force to "
                "start over there)"
            )
        return "new"
    if any(folder.iterdir()) and not force:
        raise StudyError(f"{folder}: exists, is not empty and is not a run folder (use --force)")
    return "new"


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
    curve: list[EpochMetrics], device: torch.device, synthetic: bool, n: int
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
    )


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


# ---------------------------------------------------------------------------------------------
# train()


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
) -> TrainResult:
    """Train `spec` under `recipe` on `data`; return the final test error and the curve.

    `run_dir`: write epoch checkpoints, metrics.jsonl, the weights, spec and recipe there, and
    resume from its last checkpoint (another run's folder is refused unless `force`).
    Bad input raises StudyError (or another RegNetSpaceError); other exceptions mean that the
    trial itself failed (for example a diverged loss or out of memory).
    """
    if not isinstance(recipe, Recipe):
        raise StudyError(f"recipe: expected a Recipe, got {type(recipe).__name__}")
    data = check_data(data)
    spec = spec_for_data(spec, data)
    dev = resolve_device(device)
    files = RunFiles(Path(run_dir)) if run_dir is not None else None
    identity = run_identity(spec, recipe, data)
    state = check_run_dir(files.folder, identity, force) if files is not None else "new"
    if files is not None and state == "done":
        return TrainResult.from_dict(json.loads(files.result.read_text(encoding="utf-8")))
    stream = sys.stderr if progress else None
    with _torch_threads(threads):
        return _train(spec, recipe, data, dev, files, identity, state, stream)


def _train(
    spec: Spec,
    recipe: Recipe,
    data: DataSpec,
    device: torch.device,
    files: RunFiles | None,
    identity: dict[str, Any],
    state: str,
    stream: TextIO | None,
) -> TrainResult:
    # The init comes from the recipe seed alone; the caller's global RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        built = build_model(spec, True, zero_init_last_bn=recipe.zero_init_last_bn)
        model = cast(RegNetForImageClassification, built)  # with_head=True
        _init_classifier(model)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loader = make_loader(data, recipe, spec.num_channels, device)
    optimizer = torch.optim.SGD(
        _param_groups(model, recipe),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )
    fp16 = device.type == "cuda" and recipe.precision == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    ema = _Ema(model, recipe) if recipe.ema_decay is not None else None
    curve: list[EpochMetrics] = []
    start_epoch = 0

    if files is not None:
        if state == "resume" and files.checkpoint.is_file():
            ckpt = torch.load(files.checkpoint, map_location=device, weights_only=True)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if ema is not None and ckpt.get("ema") is not None:
                ema.model.load_state_dict(ckpt["ema"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            curve = [EpochMetrics(**m) for m in ckpt["curve"]]
            start_epoch = int(ckpt["epoch"])
        else:
            files.folder.mkdir(exist_ok=True)
            for path in files.ours():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            atomic_write_text(files.identity, json.dumps(identity, indent=2) + "\n", True)
            atomic_write_text(files.spec, dump_spec(to_explicit(spec)), True)
            atomic_write_text(files.recipe, dump_recipe(recipe), True)
        _write_metrics(files, curve)

    net: nn.Module = _Logits(model)
    if recipe.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    eval_net: nn.Module = _Logits(ema.model) if ema is not None else net
    steps = loader.steps_per_epoch()
    bar = _Progress(stream, recipe.epochs, steps)

    for epoch in range(start_epoch, recipe.epochs):
        net.train()
        t0 = time.perf_counter()
        mix = np.random.default_rng(epoch_seed(recipe.seed, epoch, 2))
        mix_perm = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, 3))
        loss_sum = torch.zeros((), device=device)
        images = 0
        lr = recipe.lr
        for step, (x, y) in enumerate(loader.train_batches(epoch)):
            lr = recipe.lr_at(epoch + step / steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if recipe.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lam = 1.0
            if recipe.mixup_alpha > 0:
                lam = float(mix.beta(recipe.mixup_alpha, recipe.mixup_alpha))
                perm = torch.randperm(len(y), generator=mix_perm).to(device)
                x = lam * x + (1.0 - lam) * x[perm]
            with _autocast(device, recipe):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
                if lam < 1.0:
                    loss = lam * loss + (1.0 - lam) * F.cross_entropy(
                        logits, y[perm], label_smoothing=recipe.label_smoothing
                    )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model, epoch * steps + step, epoch + (step + 1) / steps)
            loss_sum += loss.detach().float() * len(y)
            images += len(y)
            bar.step(epoch, step, loss, images, t0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loop_seconds = time.perf_counter() - t0
        train_loss = float(loss_sum.item()) / max(1, images)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training diverged: loss is {train_loss} in epoch {epoch + 1}"
            )
        error = evaluate(eval_net, loader, device, recipe)
        metrics = EpochMetrics(
            epoch=epoch + 1,
            train_loss=train_loss,
            test_error=error,
            lr=lr,
            seconds=time.perf_counter() - t0,
            images_per_second=images / loop_seconds if loop_seconds > 0 else 0.0,
        )
        curve.append(metrics)
        bar.end(metrics)
        if files is not None:
            ckpt = {
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.model.state_dict() if ema is not None else None,
                "scaler": scaler.state_dict() if fp16 else None,
                "curve": [m.as_dict() for m in curve],
            }
            atomic_write_with(files.checkpoint, lambda tmp, c=ckpt: torch.save(c, tmp), True)
            _write_metrics(files, curve)

    images_per_epoch = steps * min(recipe.batch_size, loader.n_train)
    result = _summarize(curve, device, data.name == "synthetic", images_per_epoch)
    if files is not None:
        _save_weights(files, ema.model if ema is not None else model)
        atomic_write_text(files.result, json.dumps(result.as_dict(), indent=2) + "\n", True)
    return result
