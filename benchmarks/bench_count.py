"""Plan + count of one spec: `count(plan(spec))`, per spec, against another checkout.

    python benchmarks/bench_count.py [--rounds 7] [--baseline DIR]

Three figures per checkout, each the median over rounds of microseconds per spec:
- `again`: the shipped X and Y specs (x004, x016, y040, y120), each planned and counted again
  and again (what a report of a folder of shared designs does);
- `distinct`: 300 different random X and Y designs, each planned and counted once;
- `report`: reading, validating, planning and counting the same four spec files.
Each round runs one fresh process per checkout, alternating, so that machine load hits both
alike; `--baseline DIR` is another checkout (a `git worktree` of an earlier commit, e.g. the
one before the block definitions: `git worktree add /tmp/old 405e302^1`), and the ratios are
this checkout's figure over the baseline's (below 1: faster here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("x004", "x016", "y040", "y120")

# Run in a fresh interpreter with one checkout first on the path; prints JSON figures.
CHILD = """
import json, random, sys, time
from pathlib import Path
import regnet_space as rs
from regnet_space.core.spec import spec_from_dict

root = Path(sys.argv[1])
paths = [str(root / "specs" / f"{n}.yaml") for n in sys.argv[2].split(",")]
specs = [rs.load_spec(p) for p in paths]
rng = random.Random(0)
designs = []
while len(designs) < 300:
    block = rng.choice(["x", "y"])
    data = {
        "name": "r", "block": block, "depth": rng.randint(12, 28), "w0": 8 * rng.randint(3, 30),
        "wa": round(rng.uniform(8, 64), 2), "wm": round(rng.uniform(1.5, 3), 3),
        "group_width": rng.choice([8, 16, 24, 32, 48, 64]),
        "se_ratio": 0.25 if block == "y" else 0.0,
    }
    try:
        designs.append(spec_from_dict(data))
    except Exception:
        continue


def per_spec(items, repeat):
    t0 = time.perf_counter()
    for _ in range(repeat):
        for s in items:
            rs.count(rs.plan(s))
    return (time.perf_counter() - t0) / repeat / len(items) * 1e6


t0 = time.perf_counter()
for s in designs:  # each planned and counted once (the few the width rule refuses: refused)
    try:
        rs.count(rs.plan(s))
    except Exception:
        pass
distinct_us = (time.perf_counter() - t0) / len(designs) * 1e6
per_spec(specs, 20)  # warm-up
again_us = per_spec(specs, 200)
t0 = time.perf_counter()
for _ in range(50):
    for p in paths:
        rs.count(rs.plan(rs.load_spec(p)))
report_us = (time.perf_counter() - t0) / 50 / len(paths) * 1e6
print(json.dumps({"again": again_us, "distinct": distinct_us, "report": report_us}))
"""


def _figures(root: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), ",".join(NAMES)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=root,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    roots = {"this": ROOT}
    if args.baseline is not None:
        roots["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            runs[name].append(_figures(root))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"us per spec, median of {args.rounds} rounds, load average {load}")
    keys = ("again", "distinct", "report")
    med = {n: {k: statistics.median(r[k] for r in rs) for k in keys} for n, rs in runs.items()}
    print(f"{'checkout':<10}" + "".join(f"{k:>12}" for k in keys))
    for name in roots:
        print(f"{name:<10}" + "".join(f"{med[name][k]:12.1f}" for k in keys))
    if "baseline" in med:
        ratios = {}
        for k in keys:
            # per-round ratios (this / baseline, same round), then their median and range
            per_round = [a[k] / b[k] for a, b in zip(runs["this"], runs["baseline"], strict=True)]
            ratios[k] = (statistics.median(per_round), min(per_round), max(per_round))
        print(
            f"{'ratio':<10}"
            + "".join(f"{ratios[k][0]:12.2f}" for k in keys)
            + "   (this / baseline; per-round range: "
            + ", ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (_, lo, hi) in ratios.items())
            + ")"
        )


if __name__ == "__main__":
    main()
