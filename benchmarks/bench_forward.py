"""Forward-pass throughput over a matrix: our inference form and eager model vs Hugging Face's.

For every model x batch x thread count, three models holding the same weights (BatchNorm
statistics randomised so that folding is not trivial) run interleaved in one process:
Hugging Face's eager RegNetForImageClassification (transformers), ours eager, ours inference
form; where timm is installed, timm's RegNet too (a fourth column, with its own goals). Models
Hugging Face's RegNet cannot express (regnetz_d8, regnetv_040: timm's RegNetZ and RegNetV) run
against timm's model alone, in a table of their own, with the same goals against timm. Each
round visits every point of the matrix and, at each point, runs the models in a
rotated order, so that a busy neighbour or a warming CPU affects them alike; figures are
medians over rounds. The table is sorted worst inference-form ratio first, after a line
naming the worst ratio of each kind. Goals: eager >= 1.0x HF, inference form >= 1.25x HF,
outputs within 1e-4 of HF's.

On a machine with CUDA, a second matrix runs on the GPU: HF eager (float32) against our
inference form in channels-last float32, bfloat16 and float16, and torch.compile of it. On a
CPU-only machine that part says it is skipped.

    python benchmarks/bench_forward.py --quick            # y002, y008 x batch 1, 8 x 1, 2 threads
    python benchmarks/bench_forward.py   # y002 y008 y040 y320 regnetz_d8 regnetv_040 x 1 8 32 x 1 2
    python benchmarks/bench_forward.py --models y040 --batches 1,8 --threads 1 --rounds 9
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from regnet_space.core.errors import BuildError
from regnet_space.core.generator import make_plan
from regnet_space.core.hf import hf_config_kwargs
from regnet_space.core.reader import load_spec
from regnet_space.nn.inference import inference_model
from regnet_space.nn.model import RegNetForImageClassification, build_model

ROOT = Path(__file__).resolve().parent.parent
GOAL_EAGER = 1.0
GOAL_INFERENCE = 1.25
ATOL = 1e-4
HF, EAGER, FAST = "hugging face eager", "ours eager", "ours inference form"
UNFUSED = "ours inference form, fused kernels off"
TIMM = "timm eager"  # a column where timm is installed


@dataclass(frozen=True)
class Point:
    """Medians of one model, batch and thread count, in images per second."""

    model: str
    batch: int
    threads: int
    rates: dict[str, tuple[float, ...]]
    max_diff: float  # largest |model - reference| over the others (HF's, else timm's)

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, name: str) -> float:
        return self.median(name) / self.median(HF)

    @property
    def has_hf(self) -> bool:
        return HF in self.rates


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


def hf_expresses(p: Any) -> bool:
    """Whether Hugging Face's RegNetConfig can express the plan."""
    try:
        hf_config_kwargs(p)
    except BuildError:
        return False
    return True


def hugging_face_model(ours: RegNetForImageClassification) -> nn.Module:
    """transformers' RegNetForImageClassification holding our weights."""
    from transformers import RegNetConfig
    from transformers import RegNetForImageClassification as HfModel

    hf = HfModel(RegNetConfig(**hf_config_kwargs(ours.plan)))
    hf.load_state_dict(ours.state_dict(), strict=True)
    return hf.eval()


def timm_model(ours: RegNetForImageClassification, spec: Any) -> nn.Module | None:
    """timm's model of the same design holding our weights, or None without timm: its RegNet
    from the spec's RegNetCfg, or (timm's ByobNet RegNetZs) the model timm names as the spec."""
    try:
        import timm
        from timm.models.regnet import RegNet, RegNetCfg
    except ImportError:
        return None
    from regnet_space.core.errors import InteropError
    from regnet_space.interop.checkpoints import convert_state_dict
    from regnet_space.interop.timm import timm_cfg_from_spec

    try:
        cfg = timm_cfg_from_spec(spec)
    except InteropError:
        model = timm.create_model(spec.name, num_classes=spec.num_classes)
    else:
        kwargs = {"in_chans": cfg.in_chans, "num_classes": cfg.num_classes}
        model = RegNet(RegNetCfg(**cfg.as_kwargs()), **kwargs)
    state = convert_state_dict(ours.state_dict(), ours.plan, "hf", "timm")
    model.load_state_dict(state, strict=True)
    return model


def spec_path(name: str) -> Path:
    """specs/NAME.yaml for a shipped model name, else the path as given."""
    shipped = ROOT / "specs" / f"{name}.yaml"
    return shipped if shipped.is_file() else Path(name)


def timed(run: Callable[[], Tensor], iters: int) -> float:
    """Seconds per forward over `iters` forwards."""
    start = time.perf_counter()
    for _ in range(iters):
        run()
    return (time.perf_counter() - start) / iters


def bench_model(name: str, args: argparse.Namespace) -> list[Point]:
    """Every batch x thread point of one model, interleaved over the rounds."""
    spec = load_spec(spec_path(name))
    p = make_plan(spec, args.input_size)
    torch.manual_seed(0)
    ours = build_model(p, True).eval()
    randomise_batchnorm(ours, seed=0)
    assert isinstance(ours, RegNetForImageClassification)
    hf = hugging_face_model(ours) if hf_expresses(p) else None
    fast = inference_model(ours)
    unfused = inference_model(ours, fused_kernels=False) if args.unfused else None
    peer = timm_model(ours, spec)  # None without timm
    if hf is None and peer is None:
        raise SystemExit(f"{name}: Hugging Face's RegNet cannot express it and timm is missing")
    names = ([HF] if hf is not None else [TIMM]) + [EAGER, FAST]
    names += [UNFUSED] if unfused is not None else []
    names += [TIMM] if peer is not None and hf is not None else []
    if peer is not None:
        peer.eval()
    side = args.input_size
    inputs = {b: torch.randn(b, spec.num_channels, side, side) for b in args.batches}
    keys = [(t, b) for t in args.threads for b in args.batches]
    runners: dict[tuple[int, int], dict[str, Callable[[], Tensor]]] = {}
    iters: dict[tuple[int, int], int] = {}
    diffs: dict[tuple[int, int], float] = {}
    with torch.inference_mode():
        for t, b in keys:
            x = inputs[b]
            runners[t, b] = {
                EAGER: lambda x=x: ours(x).logits,
                FAST: lambda x=x: fast(x),
            }
            if hf is not None:
                runners[t, b][HF] = lambda x=x: hf(x).logits
            if unfused is not None:
                runners[t, b][UNFUSED] = lambda x=x: unfused(x)
            if peer is not None:
                runners[t, b][TIMM] = lambda x=x: peer(x)
            torch.set_num_threads(t)
            reference = runners[t, b][names[0]]()  # HF's, else timm's
            diffs[t, b] = max(
                float((runners[t, b][n]() - reference).abs().max()) for n in names[1:]
            )
            # warm-up (allocator, oneDNN primitives and packings), and a count of forwards
            # that makes each timing last at least --min-time
            slowest = max(timed(f, 1) for f in runners[t, b].values())
            iters[t, b] = max(1, math.ceil(args.min_time / slowest))
        rates: dict[tuple[int, int], dict[str, list[float]]] = {
            k: {n: [] for n in names} for k in keys
        }
        for r in range(args.rounds):
            for t, b in keys:
                torch.set_num_threads(t)
                for n in names[r % len(names) :] + names[: r % len(names)]:
                    rates[t, b][n].append(b / timed(runners[t, b][n], iters[t, b]))
            print(f"  {name}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return [
        Point(name, b, t, {n: tuple(v) for n, v in rates[t, b].items()}, diffs[t, b])
        for t, b in keys
    ]


def print_cpu(points: list[Point], args: argparse.Namespace) -> bool:
    """The tables (models against Hugging Face's, then models against timm's alone), worst
    inference-form ratio first; whether every goal is met."""
    setting = (
        f"CPU, {args.input_size}x{args.input_size} inputs, {args.rounds} interleaved rounds "
        f"(medians), torch {torch.__version__}"
    )
    ok = True
    with_hf = [q for q in points if q.has_hf]
    if with_hf:
        ok = print_against_hf(with_hf, setting)
    alone = [q for q in points if not q.has_hf]
    if alone:
        if not with_hf:
            print(setting)
        print_against_timm(alone)
    timm = [q for q in points if TIMM in q.rates]
    if not timm:
        print("timm: not installed, no timm column")
        return ok
    worst_diff = max(q.max_diff for q in alone) if alone else 0.0
    eager_timm = min(q.median(EAGER) / q.median(TIMM) for q in timm)
    form_timm = min(q.median(FAST) / q.median(TIMM) for q in timm)
    ok_timm = eager_timm >= GOAL_EAGER and form_timm >= GOAL_INFERENCE and worst_diff <= ATOL
    print(
        f"goals against timm: eager {eager_timm:.2f}x at worst (>= {GOAL_EAGER:.2f}x), "
        f"inference form {form_timm:.2f}x at worst (>= {GOAL_INFERENCE:.2f}x)"
        + (f", outputs within {ATOL:g} of timm's" if alone else "")
        + f": {'met' if ok_timm else 'NOT met'}"
    )
    return ok and ok_timm


def print_against_hf(points: list[Point], setting: str) -> bool:
    """The table of the models Hugging Face's RegNet expresses; whether its goals are met."""
    worst_fast = min(points, key=lambda q: q.ratio(FAST))
    worst_eager = min(points, key=lambda q: q.ratio(EAGER))
    worst_diff = max(q.max_diff for q in points)
    print(
        f"worst: inference form {worst_fast.ratio(FAST):.2f}x HF ({worst_fast.model} batch "
        f"{worst_fast.batch}, {worst_fast.threads} thread(s)); eager "
        f"{worst_eager.ratio(EAGER):.2f}x HF ({worst_eager.model} batch {worst_eager.batch}, "
        f"{worst_eager.threads} thread(s)); max |diff| {worst_diff:.1e}"
    )
    print(setting)
    head = f"{'model':<8}{'batch':>6}{'thr':>4}{'HF img/s':>11}{'eager/HF':>10}{'form/HF':>9}"
    unfused = UNFUSED in points[0].rates
    timm = TIMM in points[0].rates
    head += f"{'form min..max':>16}{'max |diff|':>12}"
    head += "  fused/unfused" if unfused else ""
    print(head + ("  eager/timm  form/timm" if timm else ""))
    for q in sorted(points, key=lambda q: q.ratio(FAST)):
        lo = min(q.rates[FAST]) / q.median(HF)
        hi = max(q.rates[FAST]) / q.median(HF)
        print(
            f"{q.model:<8}{q.batch:>6}{q.threads:>4}{q.median(HF):>11.2f}"
            f"{q.ratio(EAGER):>9.2f}x{q.ratio(FAST):>8.2f}x{lo:>8.2f}..{hi:<5.2f}"
            f"{q.max_diff:>12.1e}"
            + (f"{q.median(FAST) / q.median(UNFUSED):>14.2f}x" if unfused else "")
            + (
                f"{q.median(EAGER) / q.median(TIMM):>11.2f}x"
                f"{q.median(FAST) / q.median(TIMM):>10.2f}x"
                if timm
                else ""
            )
        )
    ok_eager = worst_eager.ratio(EAGER) >= GOAL_EAGER
    ok_fast = worst_fast.ratio(FAST) >= GOAL_INFERENCE
    ok_diff = worst_diff <= ATOL
    print(
        f"goals: eager >= {GOAL_EAGER:.2f}x HF {'met' if ok_eager else 'NOT met'}; "
        f"inference form >= {GOAL_INFERENCE:.2f}x HF {'met' if ok_fast else 'NOT met'}; "
        f"outputs within {ATOL:g} {'met' if ok_diff else 'NOT met'}"
    )
    return ok_eager and ok_fast and ok_diff


def print_against_timm(points: list[Point]) -> None:
    """The table of the models only timm builds, worst inference-form ratio first."""

    def form(q: Point) -> float:
        return q.median(FAST) / q.median(TIMM)

    unfused = UNFUSED in points[0].rates
    print("against timm alone (Hugging Face's RegNet cannot express these):")
    head = f"{'model':<12}{'batch':>6}{'thr':>4}{'timm img/s':>12}{'eager/timm':>12}"
    head += f"{'form/timm':>11}{'form min..max':>16}{'max |diff|':>12}"
    print(head + ("  fused/unfused" if unfused else ""))
    for q in sorted(points, key=form):
        base = q.median(TIMM)
        lo, hi = min(q.rates[FAST]) / base, max(q.rates[FAST]) / base
        print(
            f"{q.model:<12}{q.batch:>6}{q.threads:>4}{base:>12.2f}"
            f"{q.median(EAGER) / base:>11.2f}x{form(q):>10.2f}x{lo:>8.2f}..{hi:<5.2f}"
            f"{q.max_diff:>12.1e}"
            + (f"{q.median(FAST) / q.median(UNFUSED):>14.2f}x" if unfused else "")
        )


def gpu_runners(
    hf: nn.Module,
    fp32: nn.Module,
    half: dict[torch.dtype, nn.Module],
    compiled: Callable[[Tensor], Tensor],
    x: Tensor,
) -> dict[str, Callable[[], Tensor]]:
    """The five GPU columns on one input."""
    xb, xh = x.to(torch.bfloat16), x.to(torch.float16)
    return {
        "hf fp32": lambda: hf(x).logits,
        "fp32": lambda: fp32(x),
        "bf16": lambda: half[torch.bfloat16](xb),
        "fp16": lambda: half[torch.float16](xh),
        "compiled fp32": lambda: compiled(x),
    }


def bench_gpu(args: argparse.Namespace) -> bool:
    """HF eager fp32 vs our inference form (channels-last fp32 / bf16 / fp16, compiled).

    Also prints each column's largest logit difference from HF's; False when a float32
    column is off by more than ATOL.
    """
    if not torch.cuda.is_available():
        print("GPU matrix: skipped (CUDA is not available)")
        return True
    failures: list[str] = []
    dev = torch.device("cuda")
    print(f"GPU matrix on {torch.cuda.get_device_name(dev)}, medians of {args.rounds} rounds")
    cols = ["hf fp32", "fp32", "bf16", "fp16", "compiled fp32"]
    print(f"{'model':<8}{'batch':>6}" + "".join(f"{c:>15}" for c in cols) + "  (x HF fp32)")
    for name in args.models:
        p = make_plan(load_spec(spec_path(name)), args.input_size)
        torch.manual_seed(0)
        ours = build_model(p, True).eval()
        randomise_batchnorm(ours, seed=0)
        assert isinstance(ours, RegNetForImageClassification)
        if not hf_expresses(p):  # the GPU columns are ratios to Hugging Face's model
            print(f"{name}: skipped (Hugging Face's RegNet cannot express it)")
            continue
        hf = hugging_face_model(ours).to(dev)
        fp32 = inference_model(ours, fused_kernels=False).to(dev)
        half = {
            dt: inference_model(ours, fused_kernels=False).to(dev, dt)
            for dt in (torch.bfloat16, torch.float16)
        }
        compiled = torch.compile(inference_model(ours, fused_kernels=False).to(dev))
        for b in args.batches:
            x = torch.randn(b, p.num_channels, args.input_size, args.input_size, device=dev)
            runs = gpu_runners(hf, fp32, half, compiled, x)
            rates: dict[str, list[float]] = {c: [] for c in cols}
            with torch.inference_mode():
                for f in runs.values():  # warm-up, compilation included
                    f()
                for r in range(args.rounds):
                    for c in cols[r % len(cols) :] + cols[: r % len(cols)]:
                        torch.cuda.synchronize()
                        start = time.perf_counter()
                        for _ in range(10):
                            runs[c]()
                        torch.cuda.synchronize()
                        rates[c].append(10 * b / (time.perf_counter() - start))
                diffs = gpu_differences(runs)
            med = {c: statistics.median(v) for c, v in rates.items()}
            ratios = "".join(f"{med[c] / med['hf fp32']:>14.2f}x" for c in cols)
            worst = ", ".join(f"{c} {d:.1e}" for c, d in diffs.items())
            print(f"{name:<8}{b:>6}{ratios}   HF {med['hf fp32']:.0f} img/s")
            print(f"{'':<14}largest |logit - HF's| (TF32 off): {worst}")
            if diffs["fp32"] > ATOL or diffs["compiled fp32"] > ATOL:
                print(f"  outputs: float32 columns differ from HF's by more than {ATOL:g}")
                failures.append(f"{name} batch {b}")
    return not failures


def gpu_differences(runs: dict[str, Callable[[], Tensor]]) -> dict[str, float]:
    """Largest |logit - HF's| of each column, computed with TF32 off (true float32 sums)."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref = runs["hf fp32"]().float()
        return {
            c: (f().float() - ref).abs().max().item() for c, f in runs.items() if c != "hf fp32"
        }
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def int_list(text: str) -> list[int]:
    """`1,8,32` -> [1, 8, 32]."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument(
        "--models",
        type=lambda s: s.split(","),
        default=["y002", "y008", "y040", "y320", "regnetz_d8", "regnetv_040"],
        help="shipped model names (specs/NAME.yaml) or spec paths, comma-separated",
    )
    p.add_argument("--batches", type=int_list, default=[1, 8, 32], help="e.g. 1,8,32")
    p.add_argument("--threads", type=int_list, default=[1, 2], help="intra-op threads, e.g. 1,2")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the subset y002,y008 x batch 1,8 (threads as given), 3 rounds",
    )
    p.add_argument("--input-size", type=int, default=224, help="square input side")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds each timing lasts at least")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU matrix")
    p.add_argument("--gpu-only", action="store_true", help="skip the CPU matrix")
    p.add_argument(
        "--unfused",
        action="store_true",
        help="also time the inference form with fused kernels off (a fused/unfused column)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.rounds = ["y002", "y008"], [1, 8], 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok = True
    if not args.gpu_only:
        threads_before = torch.get_num_threads()
        try:
            points = [q for name in args.models for q in bench_model(name, args)]
        finally:
            torch.set_num_threads(threads_before)
        ok = print_cpu(points, args)
    if not args.no_gpu:
        ok = bench_gpu(args) and ok
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
