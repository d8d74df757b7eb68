"""Designs per second: the bulk path against the one-design path, interleaved in one process.

    python benchmarks/bench_sample.py [--space specs/spaces/regnety.yaml] [--rounds 7]

Bulk path: draw N designs from the space, generate their stage plans and count them
(regnet_space.space.bulk), every design, no constraint, in batches as `sample` runs it.
One-design path: for M of the same designs, spec_from_dict + generator.plan +
complexity.count_plan, one by one. Rounds alternate between the two so that machine load hits
both alike; each figure is the median over rounds, in wall-clock time and in CPU time of this
process (the one-core figure when other processes share the machine). Both paths are checked
to agree on the designs timed. Then the headline use: 1,000 designs in the +-1 % band around
400 MF, through regnet_space.space.sampling.sample.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from regnet_space.core.complexity import count_plan
from regnet_space.core.generator import plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.space.bulk import RegNetParams, count_stages, regnet_stages
from regnet_space.space.sampling import BATCH, body_of, iter_designs, sample
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
        one = [count_plan(plan(spec_from_dict(d), body.input_size)) for d in dicts]
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

    times = []
    for seed in range(3):
        wall = time.perf_counter()
        result = sample(space, 1000, seed=seed, flops="396M:404M")
        times.append(time.perf_counter() - wall)
    print(
        f"sample 1,000 designs in 396M:404M: {statistics.median(times):.2f} s wall clock "
        f"(median of 3; {result.tries:,} draws, acceptance {result.acceptance_rate:.3%})"
    )


if __name__ == "__main__":
    main()
