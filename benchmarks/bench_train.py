"""Training-step throughput: our model against Hugging Face's and timm's RegNet, same weights.

One training step = zero_grad, forward, cross-entropy, backward, SGD (momentum 0.9, Nesterov)
step. All models start from the same weights (Hugging Face's by state dict, timm's by the
checkpoint conversion; timm is skipped when it is not installed) and run interleaved in one
process, the order rotated each round. Prints the median images per second of each and the
ratios to Hugging Face's (goal: ours >= 1.0x). On CUDA, --channels-last, --bf16 and --compile
apply to every model alike.

It also measures the data pipeline's share of a digits training step: the time to cut one
batch from the on-device tensors (order, crop, normalization) against a whole step.

    python benchmarks/bench_train.py                          # specs/y002.yaml, 64 px, batch 16
    python benchmarks/bench_train.py --spec specs/x004.yaml --input-size 224 --batch 32 \\
        --device cuda --channels-last --bf16 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_forward import hugging_face_model, timm_model
from torch import Tensor, nn

from regnet_space.core.generator import make_plan
from regnet_space.core.reader import load_spec
from regnet_space.nn.model import RegNetForImageClassification, build_model

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.0


def _logits(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """The logits of a model whose forward returns an output object."""
    return lambda t: model(t).logits


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    forward: Callable[[Tensor], Tensor], model: nn.Module, x: Tensor, y: Tensor, args: Any
) -> Callable[[], None]:
    """One SGD training step of `model` on the fixed batch (x, y)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if args.bf16 and x.device.type == "cuda"
        else contextlib.nullcontext()
    )

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    return step


def time_rounds(
    steps: dict[str, Callable[[], None]], batch: int, rounds: int, iters: int, device: Any
) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every model's step `iters` times, order rotated."""
    names = list(steps)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                steps[name]()
            _sync(device)
            rates[name].append(batch * iters / (time.perf_counter() - start))
    return rates


def data_share(device: torch.device, rounds: int) -> str:
    """The digits pipeline's share of a training step of a small CIFAR-stem design at 16 px."""
    from regnet_space.study.data import DataSpec
    from regnet_space.study.loaders import make_loader
    from regnet_space.study.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "digits.yaml")
    spec = load_spec(
        {"name": "digits-bench", "block": "x", "depth": 6, "w0": 24, "wa": 20.0, "wm": 2.5}
        | {"group_width": 8, "stem_width": 16, "stem": "cifar", "num_classes": 10}
    )
    loader = make_loader(DataSpec(name="digits"), recipe, spec.num_channels, device)
    model = build_model(spec).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    data_s, step_s = [], []
    for epoch in range(rounds):
        _sync(device)
        start = time.perf_counter()
        batches = list(loader.train_batches(epoch))
        _sync(device)
        data_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).logits, y).backward()
            opt.step()
        _sync(device)
        step_s.append(time.perf_counter() - start)
    d, s = statistics.median(data_s), statistics.median(step_s)
    n = loader.steps_per_epoch()
    return (
        f"digits data pipeline: {1e3 * d / n:.3f} ms per batch of {recipe.batch_size} at "
        f"{recipe.train_size} px vs {1e3 * s / n:.2f} ms per training step of {spec.name}: "
        f"{100 * d / (d + s):.2f} % of a step (goal < 5 %)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "specs" / "y002.yaml"), help="spec file")
    p.add_argument("--batch", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--input-size", type=int, default=64, help="square input side (default 64)")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds (default 11)")
    p.add_argument("--iters", type=int, default=2, help="steps per model per round")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--channels-last", action="store_true", help="channels-last, every model")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA), every model")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--check", action="store_true", help="exit 1 when the goal is not met")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = load_spec(args.spec)
    p = make_plan(spec, args.input_size)
    ours = build_model(p, True)
    assert isinstance(ours, RegNetForImageClassification)  # with_head=True
    models: dict[str, nn.Module] = {"hugging face": hugging_face_model(ours)}
    peer = timm_model(ours, spec)
    if peer is not None:
        models["timm"] = peer
    models["ours"] = ours
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, spec.num_channels, args.input_size, args.input_size, generator=g)
    y = torch.randint(0, max(1, spec.num_classes), (args.batch,), generator=g)
    x, y = x.to(device), y.to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = {}
    for name, model in models.items():
        model.to(device).train()
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        fn = _logits(model) if name in ("hugging face", "ours") else model
        if args.compile:
            fn = torch.compile(fn)
        steps[name] = make_step(fn, model, x, y, args)
    time_rounds(steps, args.batch, 1, 1, device)  # warm-up (and compilation)
    rates = time_rounds(steps, args.batch, args.rounds, args.iters, device)

    flags = [f for f in ("channels_last", "bf16", "compile") if getattr(args, f)]
    print(
        f"{p.name}: training step (forward, backward, SGD), batch {args.batch} x "
        f"{spec.num_channels}x{args.input_size}x{args.input_size} on {device}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds x {args.iters} steps, "
        f"torch {torch.__version__}{', ' + ', '.join(flags) if flags else ''}"
    )
    if peer is None:
        print("timm: not installed, skipped")
    base = statistics.median(rates["hugging face"])
    print(f"{'model':<16}{'median img/s':>14}{'min':>10}{'max':>10}{'vs HF':>8}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:<16}{med:>14.1f}{min(values):>10.1f}{max(values):>10.1f}{med / base:>7.2f}x")
    ratios = {n: statistics.median(rates["ours"]) / statistics.median(v) for n, v in rates.items()}
    ok = all(r >= GOAL for n, r in ratios.items() if n != "ours")
    summary = "; ".join(f"ours / {n} {r:.3f}x" for n, r in ratios.items() if n != "ours")
    print(f"goal: ours >= {GOAL:.2f}x every peer: {summary} {'met' if ok else 'NOT met'}")
    print(data_share(device, max(3, args.rounds // 2)))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
