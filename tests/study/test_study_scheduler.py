"""Early stopping in studies: ASHA and the median stopping rule (as Ray Tune defines them),
judged by the driver on real digits trials, recorded, resumed, and left out by `analyze`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from study_helpers import TINY_RECIPE, run_cli, start_cli, status_json, wait_until, write_study

from regnet_space.analysis.studydb import read_study_db
from regnet_space.cli import main
from regnet_space.study.scheduler import (
    Asha,
    AshaConfig,
    MedianConfig,
    MedianStopping,
    make_scheduler,
)

EPOCHS = 3
ASHA = {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2}
MEDIAN = {"kind": "median", "grace_epochs": 1, "min_samples": 2}


def _recipe(**overrides: Any) -> dict[str, Any]:
    return {**TINY_RECIPE, "epochs": EPOCHS, **overrides}


def _decisions(db: Path) -> list[tuple[int, int, int, float, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # never creates the file
    try:
        return con.execute(
            "SELECT seq, id, epoch, error, stop FROM decisions ORDER BY seq"
        ).fetchall()
    finally:
        con.close()


def _replayed(config: dict[str, Any], rows: list[tuple[int, int, int, float, int]]) -> list[int]:
    """The decisions a fresh scheduler makes on the recorded reports, in their order."""
    kind = AshaConfig if config["kind"] == "asha" else MedianConfig
    scheduler = make_scheduler(kind.model_validate(config), EPOCHS)
    assert scheduler is not None
    return [int(scheduler.observe(i, e, err).stop) for _, i, e, err, _ in rows]


def _check_stopped_trials(db: Path, config: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Every recorded decision is the scheduler's on the recorded order; every stopped trial
    ended at the epoch it was told to stop after, with that epoch's error and no weights;
    every finished one trained to the end. Returns (done, stopped)."""
    rows = _decisions(db)
    assert [r[4] for r in rows] == _replayed(config, rows)
    stops = {(i, e) for _, i, e, _, s in rows if s}
    study = read_study_db(db)
    done = [t for t in study.trials if t.state == "done"]
    stopped = [t for t in study.trials if t.state == "stopped"]
    assert len(done) + len(stopped) == len(study.trials)
    for t in stopped:
        assert t.epochs < EPOCHS and len(t.curve) == t.epochs and (t.id, t.epochs) in stops
        assert t.error == t.curve[-1]["test_error"]
        assert not (
            db.parent / f"{db.stem}.runs" / f"trial-{t.id:05d}" / "model.safetensors"
        ).exists()
    for t in done:
        assert t.epochs == EPOCHS and not any(i == t.id for i, _ in stops)
    # Each reported epoch was judged once, in the order the trials reached it.
    seen = [(i, e) for _, i, e, _, _ in rows]
    assert len(seen) == len(set(seen)) == sum(t.epochs for t in study.trials)
    return done, stopped


# ---------------------------------------------------------------------------------------------
# The rules themselves


def test_asha_cuts_at_its_rungs_as_ray_documents() -> None:
    """Ray's own _Bracket example (grace 1, reduction factor 2): rewards 2 and 4 at rung 1
    put the cut at 3; a reward of 1 (here errors -2, -4 and -1) stops."""
    asha = Asha(AshaConfig(kind="asha", grace_epochs=1, reduction_factor=2), 10)
    assert [m for m, _ in asha.rungs] == [8, 4, 2, 1]
    assert not asha.observe(1, 1, -2.0).stop  # the first at a rung always goes on
    assert not asha.observe(2, 1, -4.0).stop
    d = asha.observe(3, 1, -1.0)
    assert d.stop and "rung 1" in (d.reason or "")
    # Between rungs nothing is judged; at rung 2 trial 1 is the first there.
    assert asha.observe(1, 2, 5.0).reason and not asha.observe(1, 3, 99.0).stop
    assert not asha.observe(1, 10, 99.0).stop  # the last epoch: the trial ends anyway
    # A rung at the last epoch would stop nothing: rungs lie below the recipe's epochs.
    assert [m for m, _ in Asha(AshaConfig(kind="asha", reduction_factor=3), 9).rungs] == [3, 1]


def test_median_rule_by_hand() -> None:
    """A trial stops when its best error so far is worse than the median of the others'
    mean errors over epochs grace..t, among those that reached t (min_samples of them)."""
    rule = MedianStopping(MedianConfig(kind="median", grace_epochs=2, min_samples=2), 5)
    for trial, errors in ((0, [50, 30, 20]), (1, [60, 40, 30])):
        for epoch, error in enumerate(errors, 1):
            assert not rule.observe(trial, epoch, error).stop  # too few others yet
    assert not rule.observe(2, 1, 90.0).stop  # before grace_epochs
    # Epoch 2: the others' means over 2..2 are 30 and 40 (median 35); best so far 36 > 35.
    d = rule.observe(2, 2, 36.0)
    assert d.stop and "35.00 %" in (d.reason or "")
    # Trial 3 at epoch 3: means over 2..3 are 25, 35 and (trial 2 stopped at 2, not there) -:
    # median 30; its best, 29, is within it.
    rule.observe(3, 1, 29.0)
    rule.observe(3, 2, 31.0)
    assert not rule.observe(3, 3, 33.0).stop


class _Trial:
    def __init__(self, i: int) -> None:
        self.trial_id, self.status = str(i), "RUNNING"

    def __hash__(self) -> int:
        return hash(self.trial_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Trial) and other.trial_id == self.trial_id


class _Controller:
    def get_live_trials(self) -> list[Any]:
        return []


@pytest.mark.parametrize("kind", ["asha", "median"])
def test_schedulers_decide_as_ray_tune_does(kind: str) -> None:
    """Ray Tune's own AsyncHyperBandScheduler and MedianStoppingRule, fed the same reports
    in the same order (random studies: trials, epochs, grace, reduction factors, tied errors
    and interleavings; seeds 0-199), stop the same trials at the same epochs."""
    schedulers = pytest.importorskip(
        "ray.tune.schedulers", reason="needs ray[tune]", exc_type=ImportError
    )
    stops = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        epochs = int(rng.integers(2, 12))
        n, grace = int(rng.integers(2, 20)), int(rng.integers(1, epochs))
        if kind == "asha":
            rf = float(rng.choice([2, 3, 4, 2.5]))
            theirs = schedulers.AsyncHyperBandScheduler(
                metric="error", mode="min", max_t=epochs, grace_period=grace, reduction_factor=rf
            )
            ours = make_scheduler(
                AshaConfig(kind="asha", grace_epochs=grace, reduction_factor=rf), epochs
            )
        else:
            k = int(rng.integers(1, 4))
            theirs = schedulers.MedianStoppingRule(
                time_attr="training_iteration", metric="error", mode="min",
                grace_period=grace, min_samples_required=k,
            )  # fmt: skip
            ours = make_scheduler(
                MedianConfig(kind="median", grace_epochs=grace, min_samples=k), epochs
            )
        assert ours is not None
        trials = [_Trial(i) for i in range(n)]
        for t in trials:
            theirs.on_trial_add(_Controller(), t)
        errors = rng.integers(0, 30, size=(n, epochs)).astype(float)  # ties happen
        epoch = [1] * n
        pending, running, slots = list(range(n)), [], int(rng.integers(1, 5))
        while pending or running:
            while pending and len(running) < slots:
                running.append(pending.pop(0))
            i = running[int(rng.integers(0, len(running)))]
            e = epoch[i]
            action = theirs.on_trial_result(
                _Controller(), trials[i], {"training_iteration": e, "error": errors[i, e - 1]}
            )
            d = ours.observe(i, e, float(errors[i, e - 1]))
            assert d.stop == (action == schedulers.TrialScheduler.STOP and e < epochs), (seed, i, e)
            stops += d.stop
            if d.stop or e == epochs:
                running.remove(i)
            else:
                epoch[i] += 1
    assert stops > 100  # the comparison saw many stops, not only trials going on


# ---------------------------------------------------------------------------------------------
# The study file


@pytest.mark.parametrize(
    ("scheduler", "recipe", "search", "expected"),
    [
        ({"kind": "asha", "grace_epochs": 3}, {}, {}, "scheduler.grace_epochs: 3 leaves no"),
        ({"kind": "median", "reduction_factor": 2}, {}, {}, "reduction_factor"),
        ({"kind": "asha", "reduction_factor": 1}, {}, {}, "reduction_factor"),
        ({"kind": "hyperband"}, {}, {}, "scheduler"),
        ({"kind": "asha"}, {}, {"epochs": {"values": [2, 3]}}, "searching epochs"),
    ],
)
def test_bad_scheduler_keys_are_one_line(
    tmp_path: Path, scheduler: Any, recipe: Any, search: Any, expected: str
) -> None:
    study = write_study(tmp_path / "s.yaml", scheduler=scheduler, recipe=_recipe(**recipe),
                        search=search)  # fmt: skip
    proc = run_cli("study", "run", str(study), cwd=tmp_path)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.db").exists()


def test_the_scheduler_cannot_change_between_runs(tmp_path: Path) -> None:
    """It decides which trials stop early: a database keeps the scheduler it was made with."""
    from regnet_space.study.database import StudyDatabase
    from regnet_space.study.studyfile import resolve

    for first, second in ((ASHA, {"kind": "none"}), ({"kind": "none"}, MEDIAN), (ASHA, MEDIAN)):
        db = tmp_path / f"{first['kind']}-{second['kind']}.db"
        path = write_study(tmp_path / "s.yaml", scheduler=first, recipe=_recipe())
        StudyDatabase.open(db, resolve(path)).close()  # the database, no trial run yet
        write_study(path, scheduler=second, recipe=_recipe())
        proc = run_cli("study", "run", str(path), "--db", str(db), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert f"was run with scheduler {first['kind']}" in line and second["kind"] in line
        assert "cannot change between runs" in line and len(line.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# ASHA on a tiny study


@pytest.fixture(scope="module")
def asha_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 tiny designs, 3 epochs, ASHA (grace 1, reduction factor 2) on one worker: the reports
    come in a fixed order, so the decisions are the same on every run."""
    folder = tmp_path_factory.mktemp("asha")
    study = write_study(folder / "asha.yaml", n=8, recipe=_recipe(), scheduler=ASHA,
                        executor={"kind": "local", "workers": 1, "threads": 1})  # fmt: skip
    proc = run_cli("study", "run", str(study), "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["stopped"] > 0 and summary["done"] + summary["stopped"] == 8
    return folder / "asha.db"


def test_asha_stops_some_trials_and_trains_the_best_to_the_end(asha_run: Path) -> None:
    done, stopped = _check_stopped_trials(asha_run, ASHA)
    assert stopped and done
    finished = sorted(done + stopped, key=lambda t: (t.error, t.id))
    assert finished[0].state == "done" and finished[0].epochs == EPOCHS
    assert all(t.diverged is False for t in finished)  # a sound recipe: nothing blew up
    st = status_json(asha_run)
    assert st["stopped"] == len(stopped) and st["done"] == len(done)
    assert st["scheduler"] == ASHA and all(b["id"] in {t.id for t in done} for b in st["best"])
    proc = run_cli("study", "status", str(asha_run), cwd=asha_run.parent)
    assert f"{len(stopped)} stopped early" in proc.stdout and "scheduler: asha" in proc.stdout


def test_export_marks_the_stopped_trials(asha_run: Path) -> None:
    proc = run_cli("study", "export", str(asha_run), "-o", "-", cwd=asha_run.parent)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    study = read_study_db(asha_run)
    assert [r["state"] for r in rows] == [t.state for t in study.trials]
    assert {r["state"] for r in rows} == {"done", "stopped"}
    assert all(r["diverged"] is False for r in rows)


def test_analyze_leaves_the_stopped_trials_out_unless_asked(asha_run: Path) -> None:
    study = read_study_db(asha_run)
    counts = study.counts()
    folder = asha_run.parent
    proc = run_cli("analyze", str(asha_run), "--json", "--no-plots", "-o", "report", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["spaces"][0]["n"] == counts["done"]
    notes = [line for line in proc.stderr.splitlines() if "stopped early" in line]
    assert len(notes) == 1 and f"{counts['stopped']} trial(s) stopped early" in notes[0]
    assert "--include-stopped" in notes[0] and "left out" in notes[0]
    html = (folder / "report" / "report.html").read_text()
    assert "stopped early by the scheduler left out" in html
    kept = run_cli("analyze", str(asha_run), "--json", "--include-stopped", cwd=folder)
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["spaces"][0]["n"] == counts["done"] + counts["stopped"]
    assert "included (--include-stopped)" in kept.stderr


def test_a_resumed_driver_keeps_the_decisions(tmp_path: Path) -> None:
    """kill -9 of the driver once it has recorded a stop: the next run keeps every recorded
    decision (same order, same answers), replays them into its scheduler, and no trial trains
    past the epoch it was told to stop after."""
    study = write_study(tmp_path / "k.yaml", n=8, recipe=_recipe(), scheduler=ASHA,
                        executor={"kind": "local", "workers": 2, "threads": 1})  # fmt: skip
    db = tmp_path / "k.db"
    proc = start_cli("study", "run", str(study), "--quiet", cwd=tmp_path)
    try:

        def a_stop() -> bool:
            try:
                return any(r[4] for r in _decisions(db))
            except sqlite3.Error:
                return False

        wait_until(a_stop, 300, "a recorded stop", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    before = _decisions(db)
    assert read_study_db(db).counts()["done"] + read_study_db(db).counts()["stopped"] < 8
    again = run_cli("study", "run", str(study), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    after = _decisions(db)
    assert after[: len(before)] == before  # kept as they were, in their order
    _check_stopped_trials(db, ASHA)


def test_a_resumed_trainer_shows_the_hook_its_last_epoch_first(tmp_path: Path) -> None:
    """The trainer half of keeping decisions: a process killed between a decision and acting
    on it resumes from the epoch checkpoint, shows that epoch to on_epoch first, and stops
    there when told to (the scheduler's recorded stop), training nothing more."""
    from regnet_space.core.spec import spec_from_dict
    from regnet_space.study.data import DataSpec
    from regnet_space.study.recipe import load_recipe
    from regnet_space.study.trainer import train

    spec = spec_from_dict({"name": "t", "block": "x", "stem_width": 8, "depth": 2, "w0": 16,
                           "wa": 8.0, "wm": 2.0, "group_width": 8}, "t")  # fmt: skip
    recipe = load_recipe(_recipe(name="t"))
    folder = tmp_path / "run"

    class Killed(Exception):
        pass

    def killed_after_two(m: Any) -> None:
        if m.epoch == 2:
            raise Killed  # after epoch 2's checkpoint, before its decision was acted on

    with pytest.raises(Killed):
        train(spec, recipe, DataSpec(name="digits"), threads=1, run_dir=folder,
              on_epoch=killed_after_two)  # fmt: skip
    seen: list[int] = []

    def stop_at_two(m: Any) -> str:
        seen.append(m.epoch)
        return "stop" if m.epoch == 2 else "continue"

    result = train(spec, recipe, DataSpec(name="digits"), threads=1, run_dir=folder,
                   on_epoch=stop_at_two)  # fmt: skip
    assert seen == [2] and result.stopped and result.epochs == 2


# ---------------------------------------------------------------------------------------------
# The median stopping rule, two workers


def test_median_stopping_on_two_workers(tmp_path: Path) -> None:
    study = write_study(tmp_path / "m.yaml", n=8, recipe=_recipe(), scheduler=MEDIAN)
    proc = run_cli("study", "run", str(study), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    done, stopped = _check_stopped_trials(tmp_path / "m.db", MEDIAN)
    assert stopped and done
    assert json.loads(proc.stdout)["stopped"] == len(stopped)


def test_ray_runs_the_scheduler_like_the_local_pool(
    asha_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_home: Path
) -> None:
    """On a local Ray with one CPU the reports come in the same order as on one local worker:
    the same decisions, the same stopped trials, the same errors."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(ray_home))  # Ray's token under the tests' own home
    db = tmp_path / "ray.db"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        study = asha_run.parent / "asha.yaml"
        code = main(["study", "run", str(study), "--db", str(db), "--executor", "ray", "--quiet"])
    finally:
        ray.shutdown()
    assert code == 0
    assert [r[1:] for r in _decisions(db)] == [r[1:] for r in _decisions(asha_run)]
    ours, local = read_study_db(db), read_study_db(asha_run)
    assert [(t.state, t.epochs, t.error) for t in ours.trials] == [
        (t.state, t.epochs, t.error) for t in local.trials
    ]
