"""Start-up time of the command line, against the imports any spec reader needs.

    python benchmarks/bench_startup.py [--rounds 11] [--baseline DIR]

Each command runs as a fresh process (`python -m regnet_space ...`); rounds alternate between
the commands so that machine load hits all alike, and each figure is the median over rounds
(after one warm-up round, which also writes the bytecode caches an installed package has) of
the wall-clock time and of the CPU time (user + system) of the process. Ratios are to the floor
`python -c "import numpy, pydantic, yaml"`, the packages a spec's report loads (the goal:
`report specs/y040.yaml` and `build --help` within 1.3x of it), and to a bare interpreter; a
row for the floor plus one pydantic model shows what validating with pydantic adds to it.
`--baseline DIR` also runs the regnet-space commands from another checkout (a `git worktree`
of an earlier commit), interleaved, rows marked "(baseline)". Then `python -X importtime`
names the slowest imports of each command, and the heavy packages each one loads (none for
--help and --version).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = ("numpy", "pydantic", "yaml", "torch")
FLOOR = 'python -c "import numpy, pydantic, yaml"'
MODEL = "import numpy, pydantic, yaml\nclass A(pydantic.BaseModel):\n    x: int\nA(x=1)"

COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    'python -c "import numpy"': [PY, "-c", "import numpy"],
    FLOOR: [PY, "-c", "import numpy, pydantic, yaml"],
    # What any reader that validates with a pydantic model pays first: pydantic's model
    # machinery (`import pydantic` alone loads none of it) and one model's validator.
    "the floor + one pydantic model": [PY, "-c", MODEL],
    "regnet-space --help": [PY, "-m", "regnet_space", "--help"],
    "regnet-space --version": [PY, "-m", "regnet_space", "--version"],
    "regnet-space build --help": [PY, "-m", "regnet_space", "build", "--help"],
    "regnet-space report specs/y040.yaml": [
        *(PY, "-m", "regnet_space", "report", "specs/y040.yaml"),
    ],
    "regnet-space report y040": [PY, "-m", "regnet_space", "report", "y040"],
    "regnet-space sample regnety -n 10": [
        *(PY, "-m", "regnet_space", "sample", "regnety", "-n", "10", "-o", "-", "--quiet"),
    ],
}


def _env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    # An installed package has its bytecode cached; so does the checkout after the warm-up.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def _imports(argv: list[str], env: dict[str, str]) -> tuple[list[tuple[int, str]], set[str]]:
    """(cumulative microseconds, top-level module) of the slowest imports, and heavy ones."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if not name.startswith(" "):
            rows.append((int(cumulative), name.strip()))
    loaded = {n.split(".")[0] for _, n in rows} | {
        line.split("|")[2].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    }
    return sorted(rows, reverse=True)[:4], {h for h in HEAVY if h in loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="rounds per command (default 11)")
    parser.add_argument("--baseline", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    runs = {name: (argv, _env()) for name, argv in COMMANDS.items()}
    if args.baseline is not None:
        base_env = _env(args.baseline.resolve())
        for name, argv in COMMANDS.items():
            if name.startswith("regnet-space"):
                runs[f"{name} (baseline)"] = (argv, base_env)
    for argv, env in runs.values():
        _time(argv, env)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (argv, env) in runs.items():
            w, c = _time(argv, env)
            wall[name].append(w)
            cpu[name].append(c)
    med = {name: statistics.median(t) for name, t in wall.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"median of {args.rounds} rounds, {os.cpu_count()} CPU(s), load average {load}")
    print(
        f"{'command':<51} {'wall s':>6} {'/ floor':>7} {'/ python':>8} {'CPU s':>6} {'/ floor':>7}"
    )
    for name in runs:
        w, c = med[name], med_cpu[name]
        print(
            f"{name:<51} {w:6.3f} {w / med[FLOOR]:7.2f} {w / med['python -c pass']:8.2f} "
            f"{c:6.3f} {c / med_cpu[FLOOR]:7.2f}"
        )
    spread = {n: (min(t) / med[n], max(t) / med[n]) for n, t in wall.items()}
    worst = max(spread, key=lambda n: spread[n][1] - spread[n][0])
    low, high = spread[worst]
    print(f"floor: {FLOOR}; widest wall spread: {worst}, {low:.2f}-{high:.2f} x its median")
    print()
    for name, argv in COMMANDS.items():
        if not name.startswith("regnet-space"):
            continue
        top, heavy = _imports(argv, runs[name][1])
        slowest = ", ".join(f"{mod} {us / 1000:.0f} ms" for us, mod in top)
        print(f"{name}: heavy packages {', '.join(sorted(heavy)) or 'none'}; slowest: {slowest}")


if __name__ == "__main__":
    main()
