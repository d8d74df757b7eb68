"""A study database on a read-only mount is read as is: status, export and analyze work.

SQLite's WAL mode wants to create `DB-shm` beside the database even to read it; a read-only
file system (a read-only bind mount here, when the test may mount; else a folder without write
permission for a user other than root) refuses that.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from study_helpers import write_study

from regnet_space.cli import main
from regnet_space.study.database import StudyDatabase
from regnet_space.study.studyfile import resolve


def _finished_db(path: Path) -> None:
    """A real study database whose four trials are done (as `study run` leaves it)."""
    study = resolve(write_study(path.parent.parent / "study.yaml"))
    StudyDatabase.open(path, study).close()
    con = sqlite3.connect(path)
    con.execute(
        "UPDATE trials SET state = 'done', error = 10.0 + 7 * id, epochs = 1, attempts = 1, "
        'curve = \'[{"epoch": 1, "test_error": 50.0, "train_loss": 1.0}]\', '
        "train_seconds = 1.5, images_per_second = 100.0, synthetic = 0"
    )
    con.commit()
    con.close()


def _mount_readonly(src: Path, dst: Path) -> bool:
    def run(*argv: str) -> bool:
        return subprocess.run(argv, capture_output=True).returncode == 0

    if not run("mount", "--bind", str(src), str(dst)):
        return False
    if run("mount", "-o", "remount,ro,bind", str(dst)):
        return True
    run("umount", str(dst))
    return False


@pytest.fixture
def readonly_db(tmp_path: Path) -> Iterator[Path]:
    """A finished study database in a folder no one may write into."""
    src = tmp_path / "src"
    src.mkdir()
    _finished_db(src / "s.db")
    assert sorted(p.name for p in src.iterdir()) == ["s.db"]  # no -wal, no -shm left
    if os.geteuid() == 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        if not _mount_readonly(src, ro):
            pytest.skip("root without the right to mount: no way to make a folder read-only")
        try:
            yield ro / "s.db"
        finally:
            subprocess.run(["umount", str(ro)], check=True)
        return
    (src / "s.db").chmod(0o444)
    src.chmod(0o555)
    try:
        yield src / "s.db"
    finally:
        src.chmod(0o755)


def test_status_export_and_analyze_read_a_database_on_a_read_only_mount(
    readonly_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OSError):  # the folder is truly read-only
        (readonly_db.parent / "probe").write_text("x")
    assert main(["study", "status", str(readonly_db), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["done"] == 4
    assert main(["study", "export", str(readonly_db), "-o", "-"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert err == "" and [r["error"] for r in rows] == [10.0, 17.0, 24.0, 31.0]
    assert main(["analyze", str(readonly_db), "-o", str(tmp_path / "report")]) == 0, (
        capsys.readouterr().err
    )
    assert (tmp_path / "report" / "report.html").is_file()
    assert sorted(p.name for p in readonly_db.parent.iterdir()) == ["s.db"]
