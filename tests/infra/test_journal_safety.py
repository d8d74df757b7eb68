"""Stale journals: a writer rolls back only its own kind's temp files, in the journal's folder.

A planted journal (or pointer) naming files elsewhere, or files in the folder that are not the
journal's own temp files, touches nothing: the next writer names what it ignored in one line on
stderr and succeeds. A real commit spanning folders, killed at any step, is still rolled back
whole (or, killed after its commit point, kept whole) by the next writer in any of its folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import ENV, run_command, temps

from regnet_space.infra.atomic import TMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]
DEAD = "3999999"  # above the kernel's pid_max: no process has this id


def _victims(j: Path) -> None:
    (j / "out").mkdir()
    (j / "victim" / "dir").mkdir(parents=True)
    (j / "victim" / "dir" / "f").write_text("keep\n")
    (j / "victim" / "c.txt").write_text("old\n")
    (j / "evil.txt").write_text("evil\n")


def _untouched(j: Path) -> None:
    assert (j / "victim" / "dir" / "f").read_text() == "keep\n"
    assert (j / "victim" / "c.txt").read_text() == "old\n"
    assert (j / "evil.txt").read_text() == "evil\n"


def test_the_issues_planted_journal_touches_nothing(tmp_path: Path) -> None:
    # The shell recipe of the issue, as is: a journal naming files outside its folder.
    _victims(tmp_path)
    row = {
        "final": f"{tmp_path}/victim/c.txt",
        "staged": f"{tmp_path}/victim/dir",
        "backup": f"{tmp_path}/evil.txt",
        "ino": None,
    }
    journal = tmp_path / "out" / f"{TMP_PREFIX}{DEAD}-0-commit.journal"
    journal.write_text(json.dumps([row]))
    proc = run_command("scale", "y002", "--flops-factor", "2", "-o", "x.yaml", cwd=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    _untouched(tmp_path)
    # One line names what was ignored (and the journal); the planted file itself is gone.
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "ignored" in proc.stderr and f"{tmp_path}/victim/c.txt" in proc.stderr
    assert temps(tmp_path) == []
    assert (tmp_path / "out" / "x.yaml").is_file()


def test_a_planted_pointer_to_a_journal_elsewhere_is_not_followed(tmp_path: Path) -> None:
    _victims(tmp_path)
    victim = tmp_path / "victim"
    name = f"{TMP_PREFIX}{DEAD}-0-"
    # A journal in the victim folder that is well formed for that folder (its own temp
    # names), reached only through a pointer planted in the output folder.
    (victim / f"{name}old-c.txt").write_text("evil\n")
    far = victim / f"{name}commit.journal"
    far.write_text(
        json.dumps(
            [
                {
                    "final": str(victim / "c.txt"),
                    "staged": None,
                    "backup": str(victim / f"{name}old-c.txt"),
                    "ino": None,
                }
            ]
        )
    )
    (tmp_path / "out" / f"{name}commit.pointer").write_text(str(far))
    proc = run_command("fit", "--widths", "24,56", "-o", "f.yaml", cwd=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    _untouched(tmp_path)
    assert far.exists()  # a journal in another folder is that folder's writers' business


def test_entries_in_the_folder_that_are_not_its_own_temp_files_are_ignored(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    (out / "other.txt").write_text("other\n")
    name = f"{TMP_PREFIX}{DEAD}-0-"
    other_writer = f"{TMP_PREFIX}{DEAD}-1-old-keep.txt"  # another commit's temp name
    (out / other_writer).write_text("planted\n")
    rows = [
        # backup is not this journal's own temp name
        {"final": "keep.txt", "staged": None, "backup": other_writer, "ino": None},
        # a plain file of the folder as backup
        {"final": "keep.txt", "staged": None, "backup": "other.txt", "ino": None},
        # a path climbing out of the folder
        {"final": "../x.txt", "staged": None, "backup": None, "ino": None},
        # staged names a file of the folder (it would be removed)
        {"final": "other.txt", "staged": "keep.txt", "backup": None, "ino": None},
        # a backup of its own name, but not the file the commit replaced (another inode)
        {
            "final": "keep.txt",
            "staged": None,
            "backup": f"{name}old-keep.txt",
            "ino": None,
            "old_ino": (out / "other.txt").stat().st_ino,
        },
    ]
    (out / f"{name}old-keep.txt").write_text("swapped\n")
    (out / f"{name}commit.journal").write_text(
        json.dumps({"folders": [str(out)], "primary": True, "entries": rows})
    )
    proc = run_command("fit", "--widths", "24,56", "-o", "f.yaml", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "keep.txt").read_text() == "mine\n"
    assert (out / "other.txt").read_text() == "other\n"
    assert proc.stderr.count("\n") == 1 and "ignored" in proc.stderr, proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a second user: root makes the files")
def test_a_journal_owned_by_another_user_is_ignored(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.txt").write_text("old\n")
    name = f"{TMP_PREFIX}{DEAD}-0-"
    backup = out / f"{name}old-c.txt"
    backup.write_text("evil\n")
    journal = out / f"{name}commit.journal"
    row = {"final": "c.txt", "staged": None, "backup": backup.name, "ino": None}
    journal.write_text(json.dumps({"folders": [str(out)], "primary": True, "entries": [row]}))
    for p in (backup, journal):
        os.chown(p, 65534, 65534)  # nobody's files, as another user would plant them
    proc = run_command("fit", "--widths", "24,56", "-o", "f.yaml", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "c.txt").read_text() == "old\n"
    assert "ignored" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert journal.exists() and backup.exists()  # someone else's files: not ours to remove


# ---------------------------------------------------------------------------------------------
# Real commits across folders, killed at every step


CRASH = """\
import os, sys
from pathlib import Path
from regnet_space.infra import outputs as io

step, steps = int(sys.argv[1]), [0]


def hook(real):
    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        steps[0] += 1
        if steps[0] == step:
            os._exit(9)  # as kill -9 right after this step of the commit
        return out
    return wrapped


io._apply = hook(io._apply)
io._commit_point = hook(io._commit_point)
outputs = io.OutputSet(force=True)
finals = [Path(p) for p in sys.argv[2:]]
for f in finals:
    if f.suffix:
        outputs.file(f)
    else:
        outputs.folder(f, ["a.yaml", "b.yaml"])
with outputs.staging() as staging:
    for f in finals:
        if f.suffix:
            staging.write_text(f, "new " + f.name)
        else:
            for n in ("a.yaml", "b.yaml"):
                staging.write_text(f / n, "new " + n)
print("committed", steps[0])
"""


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.name.startswith(TMP_PREFIX)
        and p.name != "crash.py"
        and not p.name.startswith(".regnet-space-manifest")
    }


@pytest.mark.parametrize("visit", ["first", "second", "third"])
def test_a_three_folder_commit_killed_at_any_step_is_whole(tmp_path: Path, visit: str) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    root = tmp_path / "w"
    folders = [root / "one", root / "two", root / "three"]
    # Two replaced files, one new file, and a new folder of specs (staged whole).
    finals = [folders[0] / "a.txt", folders[1] / "b.txt", folders[2] / "c.txt", folders[2] / "d"]

    def lay_down() -> None:
        if root.exists():
            import shutil

            shutil.rmtree(root)
        for f in folders:
            f.mkdir(parents=True)
        finals[0].write_text("old a.txt")
        finals[1].write_text("old b.txt")

    lay_down()
    old = _tree(root)
    done = subprocess.run(
        [sys.executable, str(script), "0", *map(str, finals)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    new, steps = _tree(root), int(done.stdout.split()[1])
    assert steps == len(finals) + 1  # each entry applied, then the commit point
    where = {"first": folders[0], "second": folders[1], "third": folders[2]}[visit]
    for step in range(1, steps + 1):
        lay_down()
        proc = subprocess.run(
            [sys.executable, str(script), str(step), *map(str, finals)],
            env=ENV,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 9, proc.stderr
        # The next writer in one of the three folders decides for all of them.
        nxt = run_command("fit", "--widths", "24,56", "-o", str(where / "fit.yaml"), cwd=tmp_path)
        assert nxt.returncode == 0 and nxt.stderr == "", nxt.stderr
        (where / "fit.yaml").unlink()
        state = _tree(root)
        assert state == (new if step == steps else old), (step, state)
        assert temps(where) == []
        # Writers in the other folders then find nothing more to do there either.
        for f in folders:
            again = run_command("fit", "--widths", "24,56", "-o", str(f / "fit.yaml"), cwd=tmp_path)
            assert again.returncode == 0 and again.stderr == "", again.stderr
            (f / "fit.yaml").unlink()
        assert _tree(root) == state and temps(root) == []


# ---------------------------------------------------------------------------------------------
# The mode of new files, read without touching the process's umask


def test_umask_mode_reads_the_umask_without_setting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regnet_space.infra import atomic

    probe = tmp_path / "probe"
    os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o666))
    expected = probe.stat().st_mode & 0o777

    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask changes the mask of every thread of the process")

    monkeypatch.setattr(os, "umask", no_umask)
    assert atomic.umask_mode() == expected
    # Without /proc: a probe file in the temp folder tells, and is gone afterwards.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    def no_proc(*args: object, **kwargs: object) -> object:
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert atomic.umask_mode() == expected
    assert sorted(tmp_path.iterdir()) == [probe]
