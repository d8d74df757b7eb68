"""Fault injection on real processes: kill -9 and Ctrl-C at observable moments, racing writers.

After any kill the outputs hold the previous result or the complete new one (never a mix),
and the next writer in the folder leaves no temp file behind; Ctrl-C is one line and exit
status 130 at any moment, start-up included; of two writers racing for one output without
--force exactly one wins.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import ENV, run_command, start_command, temps

from regnet_space.infra.atomic import TMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]
REGNETX = str(ROOT / "specs" / "spaces" / "regnetx.yaml")
SPEC = """\
name: mid
block: x
stages:
  - {width: 64, depth: 2, group_width: 8}
  - {width: 1024, depth: 2, group_width: 8}
"""


def _wait_for_temp(proc: subprocess.Popen[str], folder: Path, limit: float = 60.0) -> bool:
    """Poll until a temp file of the writer appears (True) or the process ends (False)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if any(not p.name.endswith("probe") for p in temps(folder)):
            return True
        time.sleep(0.002)
    return False


def _state(folder: Path) -> dict[str, bytes]:
    """Every regular file under folder (temp files excluded) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(TMP_PREFIX)
    }


NEXT_SAMPLE = [
    *("sample", REGNETX, "--n", "1", "--flops", "1:2", "-o", "s.jsonl", "--specs-dir", "specs"),
    "--force",
]


def _put(folder: Path, state: dict[str, bytes]) -> None:
    """Lay down a result as a previous run left it."""
    for name, data in state.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _sample_argv(seed: int, n: int = 100) -> list[str]:
    return ["sample", REGNETX, "--n", str(n), "--seed", str(seed), "--quiet"]


@pytest.fixture(scope="module")
def sample_states(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The complete result of seed 0 (the previous one) and of seed 1 (the new one)."""
    states = []
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"seed{seed}")
        proc = run_command(*_sample_argv(seed), "-o", "s.jsonl", "--specs-dir", "specs", cwd=d)
        assert proc.returncode == 0, proc.stderr
        states.append(_state(d))
    return states[0], states[1]


def _staged(folder: Path) -> int:
    """Staged output files of a writer (its temp files but probes and journals)."""
    return sum(1 for p in temps(folder) if not p.name.endswith(("probe", "journal", "pointer")))


# Moments of a writer's run, each an observable event: the process exists; it has staged
# its first file; half its 101 files; it has written its commit journal (moving files).
EVENTS = {
    "started": lambda d: True,
    "staging": lambda d: _staged(d) >= 1,
    "half staged": lambda d: _staged(d) >= 50,
    "committing": lambda d: any(p.name.endswith("commit.journal") for p in temps(d)),
}


def _kill_at(
    proc: subprocess.Popen[str], folder: Path, event: str, sig: int = signal.SIGKILL
) -> bool:
    """Signal the writer (kill -9 unless told) once `event` is seen; False if it ended first."""
    while proc.poll() is None:
        if EVENTS[event](folder):
            proc.send_signal(sig)
            return True
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("event", list(EVENTS))
def test_kill_9_during_sample_leaves_old_or_new_whole(
    tmp_path: Path, sample_states: tuple[dict, dict], event: str
) -> None:
    old, new = sample_states
    for round_ in range(10):  # until the kill lands at the event (the writer may end first)
        d = tmp_path / f"r{round_}"
        d.mkdir()
        _put(d, old)
        proc = start_command(
            *_sample_argv(1), "-o", "s.jsonl", "--specs-dir", "specs", "--force", cwd=d
        )
        killed = _kill_at(proc, d, event)
        proc.communicate()
        if killed:
            break
    assert killed, f"the writer always ended before {event}"
    # The next writer of these outputs rolls back or removes what the dead one left while
    # checking its targets; here it then stops (no design has 1 or 2 flops).
    nxt = run_command(*NEXT_SAMPLE, cwd=d)
    assert nxt.returncode == 2 and "no design can meet" in nxt.stderr, nxt.stderr
    state = _state(d)
    if event == "committing":  # rolled back, or committed just before the kill
        assert state in (old, new), sorted(set(state) ^ set(old))
    else:  # killed before its commit: the previous result, whole
        assert state == old, sorted(set(state) ^ set(old))
    assert temps(d) == []


def test_kill_9_during_build_save_keeps_the_previous_weights(tmp_path: Path) -> None:
    (tmp_path / "mid.yaml").write_text(SPEC)
    argv = ["build", "mid.yaml", "--input-size", "32", "--save", "w.pt"]
    assert run_command(*argv, cwd=tmp_path).returncode == 0
    old = _state(tmp_path)
    ref = tmp_path.parent / f"{tmp_path.name}-ref.pt"
    ref.write_bytes(old["w.pt"])
    for event in ("staging", "committing"):
        proc = start_command(*argv, "--force", cwd=tmp_path)
        killed = _kill_at(proc, tmp_path, event)  # (or it ended first: the new result, whole)
        proc.communicate()
        nxt = run_command("fit", "--widths", "24,56", "-o", "fit.yaml", cwd=tmp_path)
        assert nxt.returncode == 0, nxt.stderr
        (tmp_path / "fit.yaml").unlink()
        state = _state(tmp_path)
        if event == "staging":
            assert killed and state == old  # killed before its commit: nothing replaced
        # Both files, each the old or a complete new one (the weights are random per run).
        assert set(state) == set(old)
        assert state["w.resolved.yaml"] == old["w.resolved.yaml"]
        assert temps(tmp_path) == []
        import torch

        loaded = torch.load(tmp_path / "w.pt", weights_only=True)  # complete: it loads
        assert loaded.keys() == torch.load(ref, weights_only=True).keys()


# The package files that run before the command's Ctrl-C handler is installed: the package
# root (runpy imports it first), `python -m`'s entry and the entry point's module itself.
ENTRY_FILES = ("__init__.py", "__main__.py", "_startup.py")


def _before_the_handler(err: str) -> bool:
    """Whether a traceback's innermost frame of this package (if any) is in its entry files."""
    ours = re.findall(r'File "([^"]+)"', err)
    ours = [f for f in ours if f.startswith(str(ROOT / "regnet_space"))]
    return not ours or Path(ours[-1]).relative_to(ROOT / "regnet_space").as_posix() in ENTRY_FILES


def test_ctrl_c_at_any_moment_is_one_line(tmp_path: Path, sample_states: tuple[dict, dict]) -> None:
    old, new = sample_states
    # Start-up has no event to see from outside: fixed delays cover it; then each moment of
    # the writer's run (a signal to a writer that already ended changes nothing).
    moments: list[float | str] = [0.0, 0.05, 0.15, 0.3, *EVENTS]
    interrupted = 0
    for i, moment in enumerate(moments):
        d = tmp_path / f"c{i}"
        d.mkdir()
        _put(d, old)
        proc = start_command(
            *_sample_argv(1), "-o", "s.jsonl", "--specs-dir", "specs", "--force", cwd=d
        )
        if isinstance(moment, str):
            _kill_at(proc, d, moment, signal.SIGINT)
        else:
            time.sleep(moment)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if "Traceback" in err and _before_the_handler(err):
            # Python's own start-up (site, runpy) and the entry's first imports, before the
            # command's handler exists: the interpreter reports that itself.
            assert proc.returncode != 0 and _state(d) == old
            continue
        assert "Traceback" not in err, err
        if proc.returncode in (130, -signal.SIGINT):  # a shell shows both as status 130
            # (empty: interrupted before Python itself was up, nothing ran)
            assert err in ("regnet-space: interrupted\n", ""), err
            interrupted += 1
        else:
            assert proc.returncode == 0, err  # finished before the signal
        assert _state(d) in (old, new)
        assert temps(d) == []  # an interrupted writer removes its own temp files
    assert interrupted, "every writer ended before its signal"


@pytest.mark.parametrize("with_specs", [False, True])
def test_two_writers_racing_for_one_output_one_wins(
    tmp_path: Path, with_specs: bool, sample_states: tuple[dict, dict]
) -> None:
    for round_ in range(2):
        d = tmp_path / f"r{round_}"
        d.mkdir()
        extra = ["--specs-dir", "specs"] if with_specs else []
        procs = [
            start_command(*_sample_argv(seed), "-o", "s.jsonl", *extra, cwd=d) for seed in (0, 1)
        ]
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        for p in procs:
            p.communicate()
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2)
        assert loser.count("\n") == 1 and "already exists" in loser, loser
        winner = next(seed for seed, (code, _) in zip((0, 1), results, strict=True) if code == 0)
        whole = {k: v for k, v in sample_states[winner].items() if with_specs or "/" not in k}
        assert _state(d) == whole  # the winner's result, whole
        assert temps(d) == []


CRASH_MID_COMMIT = """\
import os, sys
from pathlib import Path
from regnet_space.infra import outputs as io

real, done = io._apply, []


def apply_then_die(entry, force):
    real(entry, force)
    done.append(entry)
    if len(done) == int(sys.argv[3]):
        os._exit(9)  # as kill -9 between two renames of one commit


io._apply = apply_then_die
a, b = Path(sys.argv[1]), Path(sys.argv[2])
outputs = io.OutputSet(force=True)
outputs.file(a)
outputs.file(b)
with outputs.staging() as staging:
    staging.write_text(a, "new a")
    staging.write_text(b, "new b")
"""


@pytest.mark.parametrize("same_folder", [True, False])
def test_a_commit_killed_halfway_is_rolled_back_by_the_next_writer(
    tmp_path: Path, same_folder: bool
) -> None:
    d1, d2 = tmp_path / "one", tmp_path / ("one" if same_folder else "two")
    d1.mkdir()
    d2.mkdir(exist_ok=True)
    a, b = d1 / "a.txt", d2 / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    script = tmp_path / "crash.py"
    script.write_text(CRASH_MID_COMMIT)
    proc = subprocess.run(
        [sys.executable, str(script), str(a), str(b), "1"], env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 9, proc.stderr
    assert (a.read_text(), b.read_text()) == ("new a", "old b")  # half a commit, for now
    # The next writer in the second folder finds the dead writer's journal (or a pointer to
    # it) and restores both files before its own work.
    nxt = run_command("fit", "--widths", "24,56", "-o", str(d2 / "fit.yaml"), cwd=tmp_path)
    assert nxt.returncode == 0, nxt.stderr
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert temps(d2) == []
    if not same_folder:  # the journal's own folder is cleaned by its next writer
        assert (
            run_command(
                "fit", "--widths", "24,56", "-o", str(d1 / "f.yaml"), cwd=tmp_path
            ).returncode
            == 0
        )
        assert temps(d1) == []
