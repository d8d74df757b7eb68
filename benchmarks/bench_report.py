"""`regnet-space report` over a folder of 1,000 spec files against `regnet-space --help`.

Writes N spec files (the shipped specs, renamed, round-robin) into a temp folder, then runs
`python -m regnet_space report FOLDER` and `python -m regnet_space --help` in subprocesses,
alternating, several rounds; prints the median wall-clock time of each and their ratio (the
goal: report of 1,000 files within 2x the start-up cost of --help). In-process, it also
splits one report into reading + parsing + validating the files and the rest.

    python benchmarks/bench_report.py [--files 1000] [--rounds 7] [--baseline DIR]

`--baseline DIR` also runs the report from another checkout (a `git worktree` of an earlier
commit) in the same rounds, and prints this checkout's time over it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regnet_space.cli.render import collect_spec_paths, render_report, summarize_paths
from regnet_space.core.reader import load_spec

ROOT = Path(__file__).resolve().parent.parent
GOAL = 2.0


def write_specs(folder: Path, n: int) -> None:
    """n spec files made from the shipped specs (their text as is)."""
    shipped = sorted((ROOT / "specs").glob("*.yaml"))
    texts = [p.read_text() for p in shipped]
    for i in range(n):
        (folder / f"spec{i:05d}.yaml").write_text(texts[i % len(texts)])


def run(argv: list[str], root: Path = ROOT) -> float:
    """Seconds one `python -m regnet_space ARGS` takes (from checkout `root`), output discarded."""
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "regnet_space", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="spec files (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--baseline", type=Path, help="another checkout to time alongside")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        write_specs(folder, args.files)
        commands = {"report": (["report", str(folder)], ROOT), "--help": (["--help"], ROOT)}
        if args.baseline is not None:
            commands["baseline report"] = (["report", str(folder)], args.baseline.resolve())
            run(*commands["baseline report"])
        times: dict[str, list[float]] = {k: [] for k in commands}
        run(*commands["report"])  # warm-up: bytecode, page cache
        for r in range(args.rounds):
            names = list(commands)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(run(*commands[name]))
        paths = collect_spec_paths([folder])
        start = time.perf_counter()
        for p in paths:
            load_spec(p)
        loading = time.perf_counter() - start
        start = time.perf_counter()
        render_report(summarize_paths(paths, 224, "paper"), "table")
        whole = time.perf_counter() - start
    finally:
        shutil.rmtree(folder)
    report, helps = statistics.median(times["report"]), statistics.median(times["--help"])
    print(f"{args.files} spec files, {args.rounds} interleaved rounds, medians (subprocesses)")
    print(f"  report FOLDER  {report:.3f} s")
    print(f"  --help         {helps:.3f} s")
    print(
        f"  ratio {report / helps:.2f}x (goal <= {GOAL:.1f}x: "
        f"{'met' if report / helps <= GOAL else 'NOT met'})"
    )
    if args.baseline is not None:
        base = statistics.median(times["baseline report"])
        print(f"  baseline report FOLDER  {base:.3f} s; this / baseline {report / base:.2f}")
    print(
        f"in process: loading the {len(paths)} files {loading:.3f} s "
        f"({loading / len(paths) * 1e3:.3f} ms each) of a whole report of {whole:.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
