"""Study files: every bad input is one line on stderr, exit 2, before any training or database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from study_helpers import TINY_SPACE, study_dict, write_study

from regnet_space.cli import main
from regnet_space.space.sampling import sample
from regnet_space.study.database import StudyDatabase
from regnet_space.study.studyfile import default_db_path, draw_search, resolve


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `study run`, expect exit 2, one stderr line and no database anywhere."""
    code = main(["study", "run", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("regnet-space: "), err
    assert not list(tmp_path.rglob("*.db")) and not list(Path.cwd().glob("*.db"))
    assert "Traceback" not in err
    return err


HOSTILE = [
    ({"epochs": 3}, "epochs: unknown field"),
    ({"space": "nope.yaml"}, "nope.yaml: no such file"),
    ({"recipe": "missing-recipe.yaml"}, "missing-recipe.yaml: no such file"),
    ({"recipe": {**study_dict()["recipe"], "bogus": 1}}, "bogus: unknown field"),
    ({"n": 0}, "n: Input should be greater than or equal to 1"),
    ({"n": "4"}, "n: Input should be a valid integer"),
    ({"data": {"name": "cifar10", "root": "empty"}}, "no cifar10 files found"),
    ({"data": {"name": "mnist"}}, "data.name"),
    ({"executor": {"kind": "slurm"}}, "executor"),
    ({"executor": {"kind": "local", "workers": 0}}, "executor.local.workers"),
    ({"search": {"momentum_typo": {"values": [0.9]}}}, "momentum_typo: not a recipe field"),
    ({"search": {"lr": {"values": [-1.0]}}}, "base_lr"),
    ({"search": {"lr": {"dist": "log_uniform", "low": 0, "high": 1}}}, "needs low > 0"),
    ({"constraints": {"flops": "5:1"}}, "empty range"),
    ({"constraints": {"depth": "1:2"}}, "constraints.depth: unknown field"),
    ({"retries": -1}, "retries"),
]


@pytest.mark.parametrize(("change", "message"), HOSTILE)
def test_hostile_study_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    path = write_study(tmp_path / "s.yaml", **change)
    err = _refused(tmp_path, capsys, str(path))
    assert message in err


def test_space_that_cannot_yield_n(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s.yaml", constraints={"flops": "1:2"})
    err = _refused(tmp_path, capsys, str(path))
    # Detected from the space's bounds before any draw (the stem alone is over 2 flops).
    assert "no design can meet flops 1:2" in err


@pytest.mark.parametrize(
    "text",
    ["[1, 2]\n", "a: &x 1\nb: *x\n", "name: x\nname: y\n", ":\n  - bad: [\n", ""],
)
def test_not_a_study_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    _refused(tmp_path, capsys, str(path))


def test_missing_study_file_and_bad_db_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "no such file" in _refused(tmp_path, capsys, str(tmp_path / "nope.yaml"))
    path = write_study(tmp_path / "s.yaml")
    err = _refused(tmp_path, capsys, str(path), "--db", str(tmp_path / "no" / "x.db"))
    assert "no such directory" in err
    err = _refused(tmp_path, capsys, str(path), "--workers", "2", "--executor", "ray")
    assert "--workers is for the local executor" in err


def test_relative_paths_and_resolution(tmp_path: Path) -> None:
    """Space and recipe paths are relative to the study file; designs equal `sample`'s."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(study_dict()["recipe"]))
    path = write_study(tmp_path / "sub" / "s.yaml", space="../space.yaml", recipe="../recipe.yaml")
    study = resolve(path)
    inline = resolve(write_study(tmp_path / "inline.yaml"))
    assert study.digest == inline.digest  # same content, wherever it is written
    expected = sample(TINY_SPACE, 4, seed=0, input_size=16)
    assert [t.record.to_dict() for t in study.trials] == [r.to_dict() for r in expected.records]
    assert default_db_path(path) == Path("s.db")
    other = resolve(write_study(tmp_path / "o.yaml", seed=1))
    assert other.digest != study.digest


def test_search_draws_are_seeded_and_in_range() -> None:
    study = resolve_dict(
        search={
            "lr": {"dist": "log_uniform", "low": 0.05, "high": 1.0},
            "weight_decay": {"dist": "uniform", "low": 0.0, "high": 1e-3},
            "epochs": {"dist": "uniform", "low": 1, "high": 3},
            "label_smoothing": {"values": [0.0, 0.1]},
        }
    )
    fields = [dict(t.recipe_fields) for t in study.trials]
    assert all(0.05 <= f["base_lr"] <= 1.0 for f in fields)
    assert all(0.0 <= f["weight_decay"] <= 1e-3 for f in fields)
    assert all(f["epochs"] in (1, 2, 3) and isinstance(f["epochs"], int) for f in fields)
    assert all(f["label_smoothing"] in (0.0, 0.1) for f in fields)
    assert len({f["base_lr"] for f in fields}) == 4
    again = draw_search(
        {"base_lr": study.file.search["lr"]}, 4, 0
    )  # the same seed gives the same values
    assert [a["base_lr"] for a in again] == [f["base_lr"] for f in fields]
    recipe = study.trial_recipe(fields[0])
    assert recipe.base_lr == fields[0]["base_lr"] and recipe.epochs == fields[0]["epochs"]


def resolve_dict(**overrides: object) -> object:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return resolve(write_study(Path(d) / "s.yaml", **overrides))


def test_other_study_against_a_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    a = resolve(write_study(tmp_path / "a.yaml"))
    db = tmp_path / "a.db"
    StudyDatabase.open(db, a).close()  # a real database of study a, nothing run yet
    rows = sqlite3.connect(db).execute("SELECT * FROM trials ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    b = write_study(tmp_path / "b.yaml", seed=1)
    code = main(["study", "run", str(b), "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "different study file" in err
    assert sqlite3.connect(db).execute("SELECT * FROM trials ORDER BY id").fetchall() == rows
    # One driver at a time: a second run while the database is held is refused.
    with StudyDatabase.open(db, a):
        code = main(["study", "run", str(tmp_path / "a.yaml"), "--db", str(db)])
        err = capsys.readouterr().err
        assert code == 2 and "another `study run` is using this database" in err


def test_status_and_export_refuse_what_is_not_a_study_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "x.db"
    text.write_text("hello")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    for path, message in ((text, "not an SQLite file"), (other, "no trials table")):
        for argv in (["status", str(path)], ["export", str(path), "-o", "-"]):
            assert main(["study", *argv]) == 2
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1
    assert main(["study", "status", str(tmp_path / "missing.db")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unreachable_ray_address_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s.yaml")
    err = _refused(tmp_path, capsys, str(path), "--executor", "ray", "--address", "127.0.0.1:1")
    assert "cannot reach Ray at 127.0.0.1:1" in err
