"""kill -9 of a real `study run` mid-study, then resume: no finished trial lost or redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from study_helpers import cli_env, run_cli, write_study

from regnet_space.analysis.studydb import read_study_db


def _children(pid: int) -> list[int]:
    """Processes whose parent is pid (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone(pids: list[int]) -> None:
    """Every process of `pids` exits within a minute."""
    assert len(pids) >= 2  # two workers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _signal_when_done(study: Path, db: Path, at_least: int, sig: int) -> tuple[int, list[int]]:
    """Start `study run`, send `sig` once `at_least` trials are done; its status, its children."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "regnet_space", "study", "run", str(study), "--db", str(db)],
        cwd=db.parent,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        done = 0
        while time.monotonic() < deadline and driver.poll() is None:
            if db.exists():
                done = read_study_db(db).counts()["done"]  # readable while being written
                if done >= at_least:
                    break
            time.sleep(0.05)
        assert driver.poll() is None, "the study finished before it could be stopped"
        assert at_least <= done < 6
        workers = _children(driver.pid)
        os.kill(driver.pid, sig)
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    if sig == signal.SIGINT:
        # The start line (database and storage, issue 18), then the one line of Ctrl-C.
        start = f"tiny-digits: database {db}, storage {db.with_suffix('.runs')}\n"
        assert err == start + "regnet-space: interrupted\n"
    return driver.returncode, workers


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to find the workers")
def test_ctrl_c_then_kill_9_then_resume(tmp_path: Path) -> None:
    study = write_study(tmp_path / "k.yaml", n=6)
    db = tmp_path / "k.db"
    # Ctrl-C: the driver stops its workers and returns the unfinished trials to pending.
    code, workers = _signal_when_done(study, db, 1, signal.SIGINT)
    assert code == 130
    _gone(workers)
    after_ctrl_c = read_study_db(db)
    assert after_ctrl_c.counts()["running"] == 0
    first = {t.id: t for t in after_ctrl_c.trials if t.state == "done"}
    # kill -9 once at least one more trial is done: nothing gets to clean up.
    code, workers = _signal_when_done(study, db, len(first) + 1, signal.SIGKILL)
    assert code == -signal.SIGKILL
    # The database is readable right after the kill, finished trials intact.
    snapshot = read_study_db(db)
    finished = {t.id: t for t in snapshot.trials if t.state == "done"}
    assert len(finished) > len(first)
    assert all(finished[i] == t for i, t in first.items())
    assert all(t.attempts == 1 and t.error is not None for t in finished.values())
    # The orphaned workers (and multiprocessing's resource tracker) see the driver gone, exit.
    _gone(workers)

    result = run_cli("study", "run", str(study), "--db", str(db), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final = read_study_db(db)
    assert final.counts() == {"pending": 0, "running": 0, "done": 6, "failed": 0, "stopped": 0}
    assert [t.id for t in final.trials] == list(range(6))
    for t in final.trials:
        assert t.attempts == 1  # each trial finished exactly once, before or after the kill
        if t.id in finished:
            assert t == finished[t.id]  # kept exactly as it was, not run again
    assert json.loads(result.stdout)["attempts"] == 6 - len(finished)


def test_a_dead_worker_fails_its_trial_only(tmp_path: Path) -> None:
    """A worker killed mid-trial (as the OOM killer does) fails that trial; a fresh one follows."""
    from regnet_space.study.executors import LocalExecutor
    from regnet_space.study.studyfile import resolve
    from regnet_space.study.worker import TrialTask

    study = resolve(write_study(tmp_path / "c.yaml", n=2))
    data = study.data.model_dump(mode="json")

    def task(i: int, epochs: int) -> TrialTask:
        recipe = study.recipe.model_dump(mode="json") | {"epochs": epochs}
        return TrialTask(i, study.trials[i].record.to_dict_spec(), recipe, data, 1)

    pool = LocalExecutor(workers=1, threads=1)
    try:
        pool.submit(task(0, 500))
        pid = pool.busy_pids()[0]
        # Killed once it reports its first epoch on the pipe: training, with 499 to go.
        events: list = []
        deadline = time.monotonic() + 120
        while not events and time.monotonic() < deadline:
            events = pool.wait(0.5)
        assert [(type(e).__name__, e.epoch) for e in events] == [("EpochReport", 1)]
        os.kill(pid, signal.SIGKILL)
        outcomes = _outcomes(pool, 60)
        assert len(outcomes) == 1 and outcomes[0].id == 0 and outcomes[0].result is None
        assert outcomes[0].message == "worker process died: killed by signal 9 (out of memory?)"
        pool.submit(task(1, 1))  # the replacement worker trains the next trial
        assert pool.busy_pids()[1] != pid
        outcomes = _outcomes(pool, 120)
        assert outcomes[0].id == 1 and outcomes[0].result is not None
        assert outcomes[0].result["error"] < 90
    finally:
        pool.close()


def _outcomes(pool: object, limit: float) -> list:
    """The next outcomes of a pool (its epoch reports skipped)."""
    from regnet_space.study.worker import TrialOutcome

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = [e for e in pool.wait(0.5) if isinstance(e, TrialOutcome)]  # type: ignore[attr-defined]
        if got:
            return got
    return []
