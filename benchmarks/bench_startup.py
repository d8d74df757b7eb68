"""Start-up time of the command line, against `python -c "import numpy"` on the same machine.

    python benchmarks/bench_startup.py [--rounds 7]

Each command runs as a fresh process (`python -m regnet_space ...`); rounds alternate between
the commands so that machine load hits all alike, and each figure is the median wall-clock
time over rounds. Ratios are to the numpy import (the floor of any numeric Python tool) and
to a bare interpreter. Then `python -X importtime` names the slowest imports of each command,
and the heavy packages each one loads (none for --help and --version).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = ("numpy", "pydantic", "yaml", "torch")

COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    'python -c "import numpy"': [PY, "-c", "import numpy"],
    "regnet-space --help": [PY, "-m", "regnet_space", "--help"],
    "regnet-space --version": [PY, "-m", "regnet_space", "--version"],
    "regnet-space report y040": [PY, "-m", "regnet_space", "report", "y040"],
    "regnet-space sample regnety -n 10": [
        *(PY, "-m", "regnet_space", "sample", "regnety", "-n", "10", "-o", "-", "--quiet"),
    ],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _time(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    return time.perf_counter() - t0


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
    parser.add_argument("--rounds", type=int, default=7, help="rounds per command (default 7)")
    args = parser.parse_args()
    env = _env()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(_time(argv, env))
    median = {name: statistics.median(t) for name, t in times.items()}
    bare, numpy = median["python -c pass"], median['python -c "import numpy"']
    print(f"median of {args.rounds} rounds, wall clock, {os.cpu_count()} CPU(s)")
    print(f"{'command':<36} {'seconds':>8} {'/ numpy':>8} {'/ python':>9}")
    for name, t in median.items():
        print(f"{name:<36} {t:8.3f} {t / numpy:8.2f} {t / bare:9.2f}")
    print()
    for name, argv in COMMANDS.items():
        if not name.startswith("regnet-space"):
            continue
        top, heavy = _imports(argv, env)
        slowest = ", ".join(f"{mod} {us / 1000:.0f} ms" for us, mod in top)
        print(f"{name}: heavy packages {', '.join(sorted(heavy)) or 'none'}; slowest: {slowest}")


if __name__ == "__main__":
    main()
