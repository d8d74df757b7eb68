"""Designs per second: the bulk path, the one-design path, sample() and a plain numpy kernel.

    python benchmarks/bench_sample.py [--space specs/spaces/regnety.yaml] [--rounds 7]

Bulk path: draw N designs from the space, generate their stage plans and count them
(regnet_space.space.bulk), every design, no constraint, in batches as `sample` runs it.
One-design path: for M of the same designs, spec_from_dict + generator.plan +
complexity.count_plan, one by one. Rounds alternate between the two so that machine load hits
both alike; each figure is the median over rounds, in wall-clock time and in CPU time of this
process (the one-core figure when other processes share the machine). Both paths are checked
to agree on the designs timed.

Then the headline use, 1,000 designs in the +-1 % band around 400 MF through
regnet_space.space.sampling.sample, interleaved with a plain numpy kernel written here for
the regnety space (draw the five fields as pycls does, the 4 stage widths and block counts
in closed form, paper-convention flops; no validity checks, no records), run at the draw
batch and at sample()'s chunk size: the ratio of sample() to the faster kernel in draws per
second is sample()'s distance to what numpy allows. It runs twice: first as the library runs
in a program that leaves glibc's malloc thresholds as they are, then in a process that raised
them as the `sample` command does for its own (regnet_space.cli.allocator). Last, what writing
spec files costs per design (`sample --specs-dir`: dump_spec and the atomic writes of the
files in a temp folder), beside the per-design time of sample() itself.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from regnet_space.cli.allocator import keep_freed_memory
from regnet_space.core.complexity import count_plan
from regnet_space.core.generator import make_plan
from regnet_space.core.spec import dump_spec, spec_from_dict
from regnet_space.infra.outputs import OutputSet
from regnet_space.space.bulk import RegNetParams, count_stages, regnet_stages
from regnet_space.space.evaluator import body_of
from regnet_space.space.output import spec_file_names
from regnet_space.space.sampling import BATCH, CHUNK, iter_designs, sample
from regnet_space.space.space import RegNetSpace, load_space

ROOT = Path(__file__).resolve().parents[1]


def _spec_dicts(space: RegNetSpace, p: RegNetParams, m: int) -> list[dict]:
    fixed = space.fixed_spec().model_dump()
    cols = {
        "depth": p.depth,
        "w0": p.w0,
        "wa": p.wa,
        "wm": p.wm,
        "group_width": p.group_width,
        "bottleneck_multiplier": p.bottleneck_multiplier,
    }
    return [{**fixed, **{k: v[i].item() for k, v in cols.items()}} for i in range(m)]


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--space", default=str(ROOT / "specs" / "spaces" / "regnety.yaml"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bulk", type=int, default=64 * BATCH, help="designs per bulk round")
    parser.add_argument("--one", type=int, default=2000, help="designs per one-design round")
    args = parser.parse_args()

    space = load_space(args.space)
    if not isinstance(space, RegNetSpace):
        raise SystemExit("the benchmark compares parametric (regnet) spaces")
    body = body_of(space)
    one_n = min(args.one, BATCH)
    rates: dict[str, list[float]] = {"bulk": [], "bulk cpu": [], "one": [], "one cpu": []}
    for r in range(args.rounds):
        wall, cpu = _clocks()
        for params in iter_designs(space, args.bulk, seed=r):
            assert isinstance(params, RegNetParams)
            stages = regnet_stages(params)
            counts = count_stages(stages, body)
        wall2, cpu2 = _clocks()
        rates["bulk"].append(args.bulk / (wall2 - wall))
        rates["bulk cpu"].append(args.bulk / (cpu2 - cpu))

        dicts = _spec_dicts(space, params, one_n)
        wall, cpu = _clocks()
        one = [count_plan(make_plan(spec_from_dict(d), body.input_size)) for d in dicts]
        wall2, cpu2 = _clocks()
        rates["one"].append(one_n / (wall2 - wall))
        rates["one cpu"].append(one_n / (cpu2 - cpu))

        valid = np.flatnonzero(stages.valid[:one_n]).tolist()
        assert [counts.flops[i] for i in valid] == [one[i].flops for i in valid]
        assert [counts.params[i] for i in valid] == [one[i].params for i in valid]
        assert [counts.acts[i] for i in valid] == [one[i].acts for i in valid]

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"space: {space.space} ({args.space}); {args.rounds} interleaved rounds, medians")
    print(f"{'':17}{'wall clock':>16}{'CPU time':>16}")
    print(
        f"{'bulk path':17}{med['bulk']:>12,.0f} d/s{med['bulk cpu']:>12,.0f} d/s"
        f"   ({args.bulk:,} designs per round, batches of {BATCH:,})"
    )
    print(
        f"{'one-design path':17}{med['one']:>12,.0f} d/s{med['one cpu']:>12,.0f} d/s"
        f"   ({one_n:,} designs per round)"
    )
    print(
        f"{'ratio':17}{med['bulk'] / med['one']:>12,.0f} x  "
        f"{med['bulk cpu'] / med['one cpu']:>12,.0f} x"
    )

    headline(space, args.rounds, "library (malloc thresholds as glibc sets them)")
    keep_freed_memory()
    headline(space, args.rounds, "the command's process (cli.allocator.keep_freed_memory)")
    specs_dir_cost(space)


def _log_uniform(rng: np.random.Generator, n: int, low: float, high: float, q: float) -> np.ndarray:
    """pycls's log-uniform draw of multiples of q in [low, high] (floats)."""
    lo, hi = math.log(low - min(q, low / 2)), math.log(high)
    k = np.ceil(np.exp(hi - rng.random(n) * (hi - lo)) / q)
    return np.clip(k, math.ceil(low / q), math.floor(high / q)) * q


SIDES2 = np.array([56, 28, 14, 7], dtype=np.float64) ** 2


def numpy_kernel(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """regnety draws, 4 stage widths and block counts in closed form, flops; (flops, 4-stage)."""
    depth = rng.integers(12, 29, n)
    w0 = _log_uniform(rng, n, 8, 256, 8)
    wa = _log_uniform(rng, n, 8, 256, 0.1)
    wm = _log_uniform(rng, n, 2, 3, 0.001)
    p2 = np.ldexp(1.0, rng.integers(3, 8, n))
    g = np.where(p2 < 8, p2, _log_uniform(rng, n, 8, 128, 8))
    log_wm = np.log(wm)
    four = np.round(np.log((wa * (depth - 1) + w0) / w0) / log_wm) == 3
    power = np.power(wm[:, None], np.arange(4.0))
    w = np.round(w0[:, None] * power / 8) * 8
    start = np.ceil(w0[:, None] * (power / np.sqrt(wm)[:, None] - 1) / wa[:, None])
    start = np.clip(start, 0, depth[:, None])
    start[:, 0] = 0
    d = np.diff(start, axis=1, append=depth[:, None])
    flops = (d * w * w * (2 + 9 * np.minimum(g[:, None], w) / w) * SIDES2).sum(axis=1)
    return flops, four


def headline(space: RegNetSpace, rounds: int, title: str) -> None:
    """sample() of 1,000 designs in 396M:404M against the numpy kernel, interleaved.

    The kernel runs at two sizes, the draw batch (BATCH) and the chunk sample() generates and
    counts at once (CHUNK batches); sample() is compared with the faster of the two.
    """
    sample(space, 10, seed=0, flops="396M:404M")  # warm-up
    sizes = {"kernel": BATCH, "kernel chunk": CHUNK * BATCH}
    rates: dict[str, list[float]] = {}
    times, tries = [], []
    for r in range(rounds):
        wall, cpu = _clocks()
        result = sample(space, 1000, seed=r, flops="396M:404M")
        wall2, cpu2 = _clocks()
        rates.setdefault("ours", []).append(result.tries / (wall2 - wall))
        rates.setdefault("ours cpu", []).append(result.tries / (cpu2 - cpu))
        times.append(wall2 - wall)
        tries.append(result.tries)
        for label, size in sizes.items():
            rng = np.random.default_rng(r)
            calls = max(1, result.tries // size)
            wall, cpu = _clocks()
            for _ in range(calls):
                numpy_kernel(rng, size)
            wall2, cpu2 = _clocks()
            rates.setdefault(label, []).append(calls * size / (wall2 - wall))
            rates.setdefault(label + " cpu", []).append(calls * size / (cpu2 - cpu))
    print(title)
    print(
        f"sample 1,000 designs in 396M:404M: {statistics.median(times):.2f} s wall clock "
        f"(median of {rounds}; ~{statistics.median(tries):,.0f} draws each)"
    )
    for clock, suffix in (("wall clock", ""), ("CPU time", " cpu")):
        ours, at_batch, at_chunk = (rates[k + suffix] for k in ("ours", "kernel", "kernel chunk"))
        faster = [max(a, b) for a, b in zip(at_batch, at_chunk, strict=True)]
        to_batch = [a / b for a, b in zip(ours, at_batch, strict=True)]
        to_faster = [a / b for a, b in zip(ours, faster, strict=True)]
        print(
            f"  {clock:<10} sample() {statistics.median(ours) / 1e6:.2f} M draws/s; numpy kernel "
            f"{statistics.median(at_batch) / 1e6:.2f} M draws/s at {BATCH:,} a call, "
            f"{statistics.median(at_chunk) / 1e6:.2f} at {CHUNK * BATCH:,}"
        )
        print(
            f"  {'':<10} ratio {statistics.median(to_batch):.2f}x to the kernel at {BATCH:,} "
            f"({min(to_batch):.2f}..{max(to_batch):.2f}), {statistics.median(to_faster):.2f}x "
            f"to the faster of the two ({min(to_faster):.2f}..{max(to_faster):.2f}); medians of "
            f"per-round ratios"
        )


def specs_dir_cost(space: RegNetSpace, n: int = 1000, rounds: int = 3) -> None:
    """Per-design time of sample() and of writing the designs' spec files (--specs-dir)."""
    result = sample(space, n, seed=0)  # no complexity band: this times the writing
    names = spec_file_names(result.space, n)
    times: dict[str, list[float]] = {"sample": [], "dump": [], "write": []}
    for r in range(rounds):
        wall = time.perf_counter()
        sample(space, n, seed=r)
        times["sample"].append((time.perf_counter() - wall) / n)
        parent = Path(tempfile.mkdtemp(prefix="bench_sample_"))
        try:
            wall = time.perf_counter()
            texts = [dump_spec(rec.to_spec()) for rec in result.records]
            wall2 = time.perf_counter()
            outputs = OutputSet(force=False)  # what `sample --specs-dir` does: one commit
            folder = outputs.folder(parent / "specs", names)
            with outputs.staging() as staging:
                for name, text in zip(names, texts, strict=True):
                    staging.write_text(folder / name, text)
            times["dump"].append((wall2 - wall) / n)
            times["write"].append((time.perf_counter() - wall2) / n)
        finally:
            shutil.rmtree(parent)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(
        f"--specs-dir: {med['dump'] + med['write']:.3f} ms per design ({med['dump']:.3f} to "
        f"dump its spec, {med['write']:.3f} to write the files as one all-or-nothing commit, "
        f"one syncfs for all, in {tempfile.gettempdir()}), beside {med['sample']:.3f} ms per "
        f"design for sample() itself (n = {n}, no band; medians of {rounds})"
    )


if __name__ == "__main__":
    main()
