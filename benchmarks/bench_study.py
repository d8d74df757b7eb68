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

Scale (`--scale N`): a study database of N trials (default 100,000), its rows created by the
driver's own database layer and all but a few filled with results through it (10-epoch
curves, errors that depend on the design plus noise: the rows of a real study, not their
training), then the commands a user runs on it, each as a real subprocess (start-up
included), median of `--repeat` runs against the goals: `study status` < 1 s, `study export`
< 5 s, `analyze DB` < 30 s; then `study run` trains the remaining trials (synthetic data,
one epoch, local workers) and the driver's own time per trial (its database writes and
scheduling, the waits for workers excluded), its start-up (resolving the N-design study
file, checking and opening the database) amortized over N, against < 0.05 s per trial.

    python benchmarks/bench_study.py --scale 100000       # about 3 minutes on 2 cores

Early stopping (`--asha`): the same 64 designs (RegNetX-CIFAR, 1-3 MF at 8 px, the shipped
recipes/digits-8px.yaml: 5 epochs on digits, 2 local workers) trained to the end and under
ASHA (Ray Tune's defaults: grace 1 epoch, reduction factor 4), each into its own database.
Prints the best error each found (ASHA's among the trials it trained to the end), the
trial-epochs each spent and their ratio, against the goal: within 1 point of full training's
best at no more than 40 % of its epochs. The databases are kept with `--keep DIR`.

    python benchmarks/bench_study.py --asha               # 64 + about 20 trial-equivalents
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from regnet_space.study.driver import run_study
from regnet_space.study.studyfile import LocalExecutorConfig, RayExecutorConfig, resolve

GOAL = 0.5  # seconds per trial, amortized
ASHA_POINTS, ASHA_EPOCHS = 1.0, 0.40  # within 1 point of the best, at <= 40 % of the epochs

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


# ---------------------------------------------------------------------------------------------
# Scale: a database of 100,000 trials

SCALE_GOALS = {
    "status": 1.0,
    "status --json": 1.0,
    "export jsonl": 5.0,
    "export csv": 5.0,
    "analyze": 30.0,
}
DRIVER_GOAL = 0.05  # seconds of the driver's own work per trial, amortized


def _scale_study(folder: Path, n: int) -> Path:
    path = folder / "scale.yaml"
    study = {
        "name": "scale",
        "space": str(ROOT / "specs/spaces/regnetx-cifar.yaml"),
        "n": n,
        "seed": 0,
        "recipe": {
            "name": "one-epoch",
            "epochs": 1,
            "batch_size": 256,
            "base_lr": 0.4,
            "train_size": 8,
            "test_size": 8,
        },
        "data": {"name": "synthetic"},
        "executor": {"kind": "local", "workers": 2, "threads": 1},
        "keep": "none",
    }
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _fake_result(trial: object, rng: object) -> dict:
    """A plausible finished trial: error from the design's size plus noise, a 10-epoch curve."""
    import math

    flops = trial.record.flops  # type: ignore[attr-defined]
    final = max(1.0, 40.0 - 4.0 * math.log10(flops) + rng.normal(0, 2))  # type: ignore[attr-defined]
    curve = [
        {
            "epoch": e,
            "train_loss": 2.3 / e,
            "test_error": final + 30.0 / e,
            "lr": 0.1 / e,
            "seconds": 1.5,
            "images_per_second": 900.0,
        }
        for e in range(1, 11)
    ]
    curve[-1]["test_error"] = final
    return {
        "error": final,
        "epochs": 10,
        "curve": curve,
        "train_seconds": 15.0,
        "images_per_second": 900.0,
        "peak_memory_bytes": 1 << 28,
        "device": "cpu",
        "host": "bench",
        "synthetic": False,
    }


def _build(folder: Path, n: int, pending: int) -> tuple[Path, Path]:
    import numpy as np

    from regnet_space.study.database import StudyDatabase

    study_file = _scale_study(folder, n)
    t0 = time.perf_counter()
    study = resolve(study_file)
    t1 = time.perf_counter()
    db = folder / "scale.db"
    with StudyDatabase.open(db, study) as opened:
        t2 = time.perf_counter()
        rng = np.random.default_rng(0)
        opened.record_results((t.record.id, _fake_result(t, rng)) for t in study.trials[pending:])
    t3 = time.perf_counter()
    print(
        f"scale: {n:,} trials: resolve {t1 - t0:.1f} s, create the database {t2 - t1:.1f} s, "
        f"fill {n - pending:,} results {t3 - t2:.1f} s; {db.stat().st_size / 1e6:.0f} MB"
    )
    return study_file, db


def _time_command(argv: list[str], cwd: Path, repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "regnet_space", *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr}")
    return times


def scale(n: int, pending: int, repeat: int) -> int:
    """Build the large database, time the readers, then let the driver finish it."""
    import statistics

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        study_file, db = _build(folder, n, pending)
        commands = {
            "status": ["study", "status", str(db)],
            "status --json": ["study", "status", str(db), "--json"],
            "export jsonl": ["study", "export", str(db), "-o", "x.jsonl", "--force"],
            "export csv": ["study", "export", str(db), "-o", "x.csv", "--force"],
            "analyze": ["analyze", str(db), "--no-plots", "--json"],
        }
        for label, argv in commands.items():
            times = _time_command(argv, folder, repeat if label != "analyze" else 1)
            median, goal = statistics.median(times), SCALE_GOALS[label]
            verdict = "meets" if median < goal else "misses"
            print(
                f"{label:>14}: {median:6.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}; "
                f"{verdict} the < {goal:g} s goal)"
            )
        t0 = time.perf_counter()
        summary = run_study(
            resolve(study_file), db, LocalExecutorConfig(kind="local", workers=2, threads=1)
        )
        total = time.perf_counter() - t0
        startup = total - summary.wall_seconds
        own = summary.driver_seconds / max(1, summary.attempts)
        amortized = (summary.driver_seconds + startup) / n
        print(
            f"{'driver':>14}: {summary.attempts} trials in {summary.wall_seconds:.1f} s; its own "
            f"work {own * 1000:.1f} ms per trial; start-up {startup:.1f} s (resolve, checks, "
            f"workers), {amortized * 1000:.2f} ms per trial amortized over {n:,} "
            f"({'meets' if max(own, amortized) < DRIVER_GOAL else 'misses'} the < "
            f"{DRIVER_GOAL} s goal)"
        )
    return 0


def _asha_study(folder: Path, name: str, n: int, scheduler: dict) -> Path:
    """The 64-design digits study (shipped space and recipe), with or without a scheduler."""
    path = folder / f"{name}.yaml"
    study = {
        "name": name,
        "space": str(ROOT / "specs/spaces/regnetx-cifar.yaml"),
        "n": n,
        "seed": 0,
        "constraints": {"flops": "1M:3M"},
        "recipe": str(ROOT / "recipes/digits-8px.yaml"),
        "data": {"name": "digits"},
        "executor": {"kind": "local", "workers": 2},
        "scheduler": scheduler,
    }
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def asha(n: int, grace: int, factor: float, keep: Path | None) -> int:
    """Full training against ASHA on the same designs: best error and trial-epochs."""
    from regnet_space.analysis.studydb import read_study_db

    folder = keep or Path(tempfile.mkdtemp(prefix="bench-asha-"))
    folder.mkdir(parents=True, exist_ok=True)
    runs = {}
    schedulers = {
        "full": {"kind": "none"},
        "asha": {"kind": "asha", "grace_epochs": grace, "reduction_factor": factor},
    }
    for name, scheduler in schedulers.items():
        study = resolve(_asha_study(folder, name, n, scheduler))
        t0 = time.perf_counter()
        run_study(study, folder / f"{name}.db", study.file.executor)
        wall = time.perf_counter() - t0
        db = read_study_db(folder / f"{name}.db")
        done = db.done()
        epochs = sum(t.epochs or 0 for t in db.trials)
        runs[name] = (done[0].error, epochs, wall, db.counts())
        print(
            f"{name}: best {done[0].error:.2f} % ({done[0].name}), {epochs} trial-epochs, "
            f"{len(done)} trained to the end, {db.counts()['stopped']} stopped, wall {wall:.0f} s"
        )
    (best_full, epochs_full, _, _), (best_asha, epochs_asha, _, _) = runs["full"], runs["asha"]
    gap, ratio = best_asha - best_full, epochs_asha / epochs_full
    met = gap <= ASHA_POINTS and ratio <= ASHA_EPOCHS
    print(
        f"ASHA / full: best error {best_asha:.2f} % vs {best_full:.2f} % ({gap:+.2f} points), "
        f"trial-epochs {epochs_asha} / {epochs_full} = {ratio:.3f} "
        f"({'meets' if met else 'misses'} the goal: <= {ASHA_POINTS:g} point at <= "
        f"{ASHA_EPOCHS:.0%} of the epochs)"
    )
    if keep is None:
        import shutil

        shutil.rmtree(folder)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the study on each executor and print the overhead figures (or the scale figures,
    or the early-stopping comparison)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=32, help="tiny 1-epoch trials (32)")
    p.add_argument("--slots", type=int, default=2, help="trials at once (2)")
    p.add_argument("--executor", choices=("local", "ray", "both"), default="both")
    p.add_argument(
        "--scale",
        type=int,
        nargs="?",
        const=100_000,
        metavar="N",
        help="time the commands on a database of N trials (100,000)",
    )
    p.add_argument("--pending", type=int, default=64, help="scale: trials left to train (64)")
    p.add_argument("--repeat", type=int, default=3, help="scale: runs of each command (3)")
    p.add_argument("--asha", action="store_true", help="full training against ASHA")
    p.add_argument("--designs", type=int, default=64, help="asha: designs (64)")
    p.add_argument("--grace-epochs", type=int, default=1, help="asha: first rung (1)")
    p.add_argument("--reduction-factor", type=float, default=4, help="asha: (4)")
    p.add_argument("--keep", type=Path, help="asha: keep the two databases in this folder")
    args = p.parse_args(argv)
    if args.scale:
        return scale(args.scale, args.pending, args.repeat)
    if args.asha:
        factor = float(args.reduction_factor)
        factor = int(factor) if factor.is_integer() else factor
        return asha(args.designs, args.grace_epochs, factor, args.keep)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        study = resolve(_study(folder, args.trials))
        if args.executor in ("local", "both"):
            local = LocalExecutorConfig(kind="local", workers=args.slots, threads=1)
            summary = run_study(study, folder / "local.db", local)
            _report("local", summary, args.trials)
        if args.executor in ("ray", "both"):
            try:
                import ray
            except ImportError:
                print("ray: not installed (pip install 'regnet-space[ray]'); skipped")
                return 0
            # Ray writes an authentication token under ~/.ray: a home of its own for this run.
            os.environ["HOME"] = str(folder / "home")
            t0 = time.perf_counter()
            ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False)
            start = time.perf_counter() - t0
            try:
                summary = run_study(study, folder / "ray.db", RayExecutorConfig(kind="ray"))
            finally:
                ray.shutdown()
            _report("ray", summary, args.trials, f" (+ {start:.1f} s to start Ray)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
