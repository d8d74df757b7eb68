"""What a study keeps (`keep: best-K`) and `study best`: the best trials' files out, whole,
their weights giving the recorded error again on the study's data."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from study_helpers import TINY_RECIPE, run_cli, start_cli, write_study

from regnet_space.analysis.studydb import read_study_db
from regnet_space.cli import main
from regnet_space.infra.atomic import TMP_PREFIX
from regnet_space.study.data import DataSpec
from regnet_space.study.trainer import evaluate_run, load_weights

FILES = {"spec.yaml", "recipe.yaml", "model.safetensors", "result.json"}
STUDY: dict[str, Any] = {"n": 3, "keep": "best-2", "recipe": {**TINY_RECIPE, "epochs": 2}}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-trial study that keeps the best 2 trials' weights."""
    folder = tmp_path_factory.mktemp("best")
    study = write_study(folder / "b.yaml", **STUDY)
    assert main(["study", "run", str(study), "--db", str(folder / "b.db"), "--quiet"]) == 0
    return folder / "b.db"


def _ranked(db: Path) -> list[Any]:
    return read_study_db(db).done()


def test_keep_best_k_and_no_checkpoints(study_run: Path) -> None:
    storage = study_run.with_suffix(".runs")
    ranked = _ranked(study_run)
    for rank, t in enumerate(ranked):
        folder = storage / f"trial-{t.id:05d}"
        names = {p.name for p in folder.iterdir()}
        assert {"run.json", "metrics.jsonl", "spec.yaml", "recipe.yaml", "result.json"} <= names
        assert "checkpoint.pt" not in names  # finished: its epoch checkpoint is gone
        assert ("model.safetensors" in names) == (rank < 2)  # the best 2 keep their weights


def test_best_weights_give_the_recorded_error(
    study_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "best"
    assert main(["study", "best", str(study_run), "-o", str(out)]) == 0
    best = _ranked(study_run)[0]
    assert f"1. trial {best.id} " in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == FILES | {"best.json", ".regnet-space-manifest"}
    assert main(["build", str(out / "spec.yaml"), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    model = load_weights(out)  # spec.yaml's model with the trained weights, strictly
    assert sum(p.numel() for p in model.parameters()) == built["params"]
    assert model.classifier[-1].out_features == 10  # the study data has 10 classes
    assert evaluate_run(out, DataSpec(name="digits"), threads=1) == best.error
    # Exclusive: refused without --force, replaced with it.
    assert main(["study", "best", str(study_run), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not empty (use --force" in err and err.count("\n") == 1
    assert main(["study", "best", str(study_run), "-o", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"][0]["id"] == best.id


def test_top_k_folders_then_one_with_force(
    study_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "top"
    ranked = _ranked(study_run)
    assert main(["study", "best", str(study_run), "-o", str(out), "--top", "2"]) == 0
    subs = [f"{r}-trial-{t.id:05d}" for r, t in enumerate(ranked[:2], 1)]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(subs)
    for sub, t in zip(subs, ranked, strict=False):
        assert {p.name for p in (out / sub).iterdir()} >= FILES
        assert evaluate_run(out / sub, DataSpec(name="digits"), threads=1) == t.error
    # Only 2 trials kept their weights: asking for 3 is one line, nothing written.
    other = tmp_path / "three"
    assert main(["study", "best", str(study_run), "-o", str(other), "--top", "3"]) == 2
    err = capsys.readouterr().err
    assert "no model.safetensors" in err and "keep: best-2" in err and err.count("\n") == 1
    assert not other.exists()
    # --force with K = 1 replaces the folders by the four files of the best trial.
    assert main(["study", "best", str(study_run), "-o", str(out), "--force"]) == 0
    assert {p.name for p in out.iterdir()} == FILES | {"best.json", ".regnet-space-manifest"}


def test_a_killed_study_best_leaves_nothing_partial(study_run: Path, tmp_path: Path) -> None:
    killed = 0
    for round_ in range(20):
        out = tmp_path / f"k{round_}"
        argv = ["study", "best", str(study_run), "-o", str(out), "--top", "2"]
        proc = start_cli(*argv, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir()):
                proc.send_signal(signal.SIGKILL)  # while it stages the output
                break
            time.sleep(0.001)
        proc.communicate()
        if proc.returncode != -signal.SIGKILL:
            shutil.rmtree(out)  # finished before a temp file was seen: try again
            continue
        killed += 1
        assert not out.exists()  # nothing of the output appeared
        # The next writer in the folder removes what the killed one left, and succeeds.
        again = run_cli(*argv, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
        if killed == 2:
            break
    assert killed == 2


def test_a_new_keep_drops_the_extra_weights(study_run: Path, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    shutil.copy(study_run, db)
    shutil.copytree(study_run.with_suffix(".runs"), tmp_path / "b.runs")
    study = write_study(tmp_path / "b.yaml", **{**STUDY, "keep": "best-1"})
    assert main(["study", "run", str(study), "--db", str(db), "--quiet"]) == 0
    kept = sorted(p.parent.name for p in (tmp_path / "b.runs").glob("*/model.safetensors"))
    assert kept == [f"trial-{_ranked(db)[0].id:05d}"]
