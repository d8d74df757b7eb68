"""Forward-pass throughput: our eager model, our inference form and Hugging Face's RegNet.

All three hold the same weights (BatchNorm statistics randomised so that folding is not
trivial) and run interleaved in one process, several rounds, rotating the order each round
so that a busy neighbour or a warming CPU affects them alike. Prints the median images per
second of each, the ratios to Hugging Face's eager model, and whether the goals are met
(eager >= 1.0x, inference form >= 1.25x).

    python benchmarks/bench_forward.py                       # specs/y040.yaml, batch 4
    python benchmarks/bench_forward.py --spec specs/x016.yaml --batch 8 --rounds 21
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from regnet_space.core.generator import plan as make_plan
from regnet_space.core.spec import load_spec_file
from regnet_space.nn.inference import inference_model
from regnet_space.nn.model import RegNetForImageClassification, build_model, hf_config_kwargs

ROOT = Path(__file__).resolve().parent.parent
GOAL_EAGER = 1.0
GOAL_INFERENCE = 1.25


@dataclass(frozen=True)
class Result:
    """Images per second of one model over the rounds."""

    name: str
    rates: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def hugging_face_model(ours: RegNetForImageClassification) -> nn.Module:
    """transformers' RegNetForImageClassification holding our weights."""
    from transformers import RegNetConfig
    from transformers import RegNetForImageClassification as HfModel

    hf = HfModel(RegNetConfig(**hf_config_kwargs(ours.plan)))
    hf.load_state_dict(ours.state_dict(), strict=True)
    return hf.eval()


def time_rounds(
    runners: dict[str, Callable[[], Tensor]], batch: int, rounds: int, iters: int
) -> list[Result]:
    """Interleaved timing: each round runs every model `iters` times, order rotated."""
    names = list(runners)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(iters):
                runners[name]()
            rates[name].append(batch * iters / (time.perf_counter() - start))
    return [Result(n, tuple(rates[n])) for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "specs" / "y040.yaml"), help="spec file")
    p.add_argument("--batch", type=int, default=4, help="images per forward (default 4)")
    p.add_argument("--input-size", type=int, default=224, help="square input side")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--iters", type=int, default=1, help="forwards per model per round")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads (default 1: on a shared 2-core machine more threads mostly "
        "measure OpenMP waits)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = load_spec_file(args.spec)
    p = make_plan(spec, args.input_size)
    ours = build_model(p, True).eval()
    randomise_batchnorm(ours, seed=0)
    assert isinstance(ours, RegNetForImageClassification)
    hf = hugging_face_model(ours)
    fast = inference_model(ours)
    x = torch.randn(args.batch, spec.num_channels, args.input_size, args.input_size)

    runners: dict[str, Callable[[], Tensor]] = {
        "hugging face eager": lambda: hf(x).logits,
        "ours eager": lambda: ours(x).logits,
        "ours inference form": lambda: fast(x),
    }
    with torch.inference_mode():
        reference = runners["hugging face eager"]()
        diffs = {n: float((f() - reference).abs().max()) for n, f in runners.items()}
        time_rounds(runners, args.batch, 1, 1)  # warm-up: allocator, oneDNN primitive caches
        results = time_rounds(runners, args.batch, args.rounds, args.iters)

    base = results[0].median
    print(
        f"{p.name}: batch {args.batch} x {spec.num_channels}x{args.input_size}x{args.input_size}"
        f", {args.threads} thread(s), {args.rounds} interleaved rounds x {args.iters} forwards"
        f", torch {torch.__version__}"
    )
    print(f"{'model':<22}{'median img/s':>14}{'min':>9}{'max':>9}{'vs HF':>8}{'max |diff|':>13}")
    for res in results:
        print(
            f"{res.name:<22}{res.median:>14.2f}{min(res.rates):>9.2f}{max(res.rates):>9.2f}"
            f"{res.median / base:>7.2f}x{diffs[res.name]:>13.2e}"
        )
    eager_ratio, fast_ratio = results[1].median / base, results[2].median / base
    ok_eager, ok_fast = eager_ratio >= GOAL_EAGER, fast_ratio >= GOAL_INFERENCE
    print(
        f"goals: eager >= {GOAL_EAGER:.2f}x HF: {eager_ratio:.3f}x "
        f"{'met' if ok_eager else 'NOT met'}; inference form >= {GOAL_INFERENCE:.2f}x HF: "
        f"{fast_ratio:.3f}x {'met' if ok_fast else 'NOT met'}"
    )
    return 0 if (ok_eager and ok_fast) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
