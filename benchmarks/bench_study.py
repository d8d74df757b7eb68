"""Study overhead per trial: what a study costs beyond the trials' own training time.

Runs one study of many tiny 1-epoch digits trials on the local executor and on a local Ray
(each into a fresh database), and prints, per executor:

- wall: the run's wall time (executor start included: worker processes, torch import, Ray);
- overhead per trial = (wall x slots - sum of the trials' train_seconds) / trials, in
  slot-seconds: start-up, data loading, model building, scheduling and database writes,
  everything a slot spends outside the trainer's timed epochs;
- amortized overhead = (wall - sum of train_seconds / slots) / trials: what each trial adds
  to the study's wall time. The goal is < 0.5 s per trial amortized;
- from the database's timestamps: the start-up of each slot (its first trial's span minus its
  training: process start, torch and data set-up) and the steady per-trial overhead (median
  span minus training of the other trials: handing out, data, model, recording).

    python benchmarks/bench_study.py                      # 32 trials, 2 slots, both executors
    python benchmarks/bench_study.py --trials 64 --slots 2 --executor local
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

from regnet_space.study.driver import run_study
from regnet_space.study.studyfile import LocalExecutor, RayExecutor, resolve

GOAL = 0.5  # seconds per trial, amortized

ROOT = Path(__file__).resolve().parents[1]
# The study tests' tiny space: designs that train in a second, so the overhead shows.
SPACE = yaml.safe_load((ROOT / "tests/data/spaces/tiny.yaml").read_text())


def _study(folder: Path, trials: int) -> Path:
    path = folder / "bench.yaml"
    study = {
        "name": "bench-study",
        "space": SPACE,
        "n": trials,
        "seed": 0,
        "recipe": {
            "epochs": 1,
            "batch_size": 64,
            "base_lr": 0.4,
            "train_size": 16,
            "test_size": 16,
        },
        "data": {"name": "digits"},
    }
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _spans(db: Path) -> tuple[float, float]:
    """Mean start-up of a slot and the median steady per-trial overhead, from the database."""
    import statistics

    from regnet_space.analysis.studydb import read_study_db

    trials = sorted(read_study_db(db).trials, key=lambda t: t.started_at or 0.0)
    over = [
        (t.finished_at or 0.0) - (t.started_at or 0.0) - (t.train_seconds or 0.0) for t in trials
    ]
    first = trials[0].started_at or 0.0
    # A slot's first trial starts within a second of the run's start; the rest follow others.
    starts = [o for t, o in zip(trials, over, strict=True) if (t.started_at or 0.0) - first < 1.0]
    steady = over[len(starts) :]
    return statistics.mean(starts), statistics.median(steady) if steady else float("nan")


def _report(label: str, summary: object, trials: int, extra: str = "") -> float:
    wall = summary.wall_seconds  # type: ignore[attr-defined]
    train = summary.train_seconds  # type: ignore[attr-defined]
    slots = summary.slots  # type: ignore[attr-defined]
    per_trial = (wall * slots - train) / trials
    amortized = (wall - train / slots) / trials
    verdict = "meets" if amortized < GOAL else "misses"
    start, steady = _spans(summary.db)  # type: ignore[attr-defined]
    print(
        f"{label:>6}: {trials} trials on {slots} slot(s) in {wall:.1f} s{extra}; trials' own "
        f"training {train:.1f} s; overhead per trial {per_trial:.2f} slot-s, amortized "
        f"{amortized:.3f} s ({verdict} the < {GOAL} s goal)\n"
        f"        start-up per slot {start:.2f} s (first trial), then {steady:.3f} s per trial "
        "(median)"
    )
    return amortized


def main(argv: list[str] | None = None) -> int:
    """Run the study on each executor and print the overhead figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=32, help="tiny 1-epoch trials (32)")
    p.add_argument("--slots", type=int, default=2, help="trials at once (2)")
    p.add_argument("--executor", choices=("local", "ray", "both"), default="both")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        study = resolve(_study(folder, args.trials))
        if args.executor in ("local", "both"):
            local = LocalExecutor(kind="local", workers=args.slots, threads=1)
            summary = run_study(study, folder / "local.db", local)
            _report("local", summary, args.trials)
        if args.executor in ("ray", "both"):
            try:
                import ray
            except ImportError:
                print("ray: not installed (pip install 'regnet-space[ray]'); skipped")
                return 0
            t0 = time.perf_counter()
            ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False)
            start = time.perf_counter() - t0
            try:
                summary = run_study(study, folder / "ray.db", RayExecutor(kind="ray"))
            finally:
                ray.shutdown()
            _report("ray", summary, args.trials, f" (+ {start:.1f} s to start Ray)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
