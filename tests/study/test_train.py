"""The trainer and `regnet-space train`: real learning on digits, determinism, resume after a
real SIGKILL, run folders, and hostile input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from regnet_space.cli import main
from regnet_space.core.reader import load_spec
from regnet_space.study.data import DataSpec
from regnet_space.study.errors import StudyError
from regnet_space.study.recipe import Recipe, load_recipe
from regnet_space.study.trainer import TrainResult, train

ROOT = Path(__file__).resolve().parents[2]
TINY: dict[str, Any] = {
    "name": "tiny",
    "block": "x",
    "stem_width": 16,
    "stages": [
        {"width": 16, "depth": 1, "group_width": 8, "stride": 1},
        {"width": 32, "depth": 2, "group_width": 8},
    ],
}
DIGITS = DataSpec(name="digits")


def tiny_recipe(**changes: Any) -> Recipe:
    """A short digits recipe at 16 px."""
    base = {"epochs": 4, "batch_size": 64, "base_lr": 0.4, "warmup_epochs": 0.5}
    return load_recipe({**base, "train_size": 16, "test_size": 16, **changes})


def curve_of(result: TrainResult | dict[str, Any]) -> list[tuple[float, float]]:
    """(train loss, test error) per epoch: what must repeat exactly."""
    data = result.as_dict() if isinstance(result, TrainResult) else result
    return [(m["train_loss"], m["test_error"]) for m in data["curve"]]


@pytest.fixture(scope="module")
def learned() -> TrainResult:
    return train(load_spec(TINY), tiny_recipe(), DIGITS, threads=1)


def test_a_tiny_design_learns_digits(learned: TrainResult) -> None:
    # Chance is 90 %; a model or optimizer that does not learn stays far above 15 %.
    assert learned.error < 15.0
    assert learned.epochs == 4 and [m.epoch for m in learned.curve] == [1, 2, 3, 4]
    assert learned.curve[-1].train_loss < learned.curve[0].train_loss / 3
    assert not learned.synthetic and learned.device == "cpu" and learned.host
    assert learned.images_per_second > 0 and learned.peak_memory_bytes > 0
    assert learned.train_seconds == pytest.approx(sum(m.seconds for m in learned.curve))
    assert TrainResult.from_dict(json.loads(json.dumps(learned.as_dict()))) == learned


def test_the_threshold_fails_without_learning() -> None:
    # The same run with a learning rate too small to move the weights stays near chance.
    frozen = train(load_spec(TINY), tiny_recipe(base_lr=1e-7), DIGITS, threads=1)
    assert frozen.error > 50.0


def test_same_seed_and_threads_give_the_same_run(learned: TrainResult) -> None:
    again = train(load_spec(TINY), tiny_recipe(), DIGITS, threads=1)
    assert curve_of(again) == curve_of(learned) and again.error == learned.error
    other = train(load_spec(TINY), tiny_recipe(seed=1, epochs=1), DIGITS, threads=1)
    assert curve_of(other)[0] != curve_of(learned)[0]


def test_every_recipe_option_trains() -> None:
    recipe = tiny_recipe(
        nesterov=False,
        bn_weight_decay=0.0,
        label_smoothing=0.1,
        mixup_alpha=0.2,
        ema_decay=0.8,
        ema_every=2,
        channels_last=True,
        warmup_epochs=1.0,
        min_lr=0.01,
    )
    result = train(load_spec(TINY), recipe, DIGITS, threads=1)
    assert result.error < 30.0
    assert result.curve[-1].lr == pytest.approx(recipe.lr_at(4 - 1 / 22))


def test_synthetic_runs_are_marked_and_the_spec_gets_the_data_classes() -> None:
    spec = load_spec({**TINY, "num_classes": 1000})
    result = train(spec, tiny_recipe(epochs=1, batch_size=256), DataSpec(name="synthetic"))
    assert result.synthetic and result.epochs == 1 and result.error > 50.0


def test_bad_arguments_are_study_errors() -> None:
    spec = load_spec(TINY)
    with pytest.raises(StudyError, match="unknown device 'tpu'"):
        train(spec, tiny_recipe(), DIGITS, device="tpu")
    with pytest.raises(StudyError, match="threads: must be a positive integer"):
        train(spec, tiny_recipe(), DIGITS, threads=0)
    with pytest.raises(StudyError, match="recipe: expected a Recipe, got dict"):
        train(spec, {"epochs": 1}, DIGITS)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(StudyError, match="CUDA is not available"):
            train(spec, tiny_recipe(), DIGITS, device="cuda")


# ---------------------------------------------------------------------------------------------
# The command and its run folder


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(epochs=6).model_dump()))
    return {"spec": spec, "recipe": recipe, "run": tmp_path / "run"}


def _cli(files: dict[str, Path], *extra: str) -> list[str]:
    args = ["train", str(files["spec"]), "--recipe", str(files["recipe"])]
    return [*args, "-o", str(files["run"]), "--threads", "1", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_resume_after_sigkill_ends_as_an_uninterrupted_run(files: dict[str, Path]) -> None:
    cmd = [sys.executable, "-m", "regnet_space", *_cli(files)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = files["run"] / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (files["run"] / "result.json").exists()
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= done < 6  # killed after its first epoch checkpoint, before the end
    resumed = subprocess.run(
        [*cmd, "--json"], env=_env(), capture_output=True, text=True, check=True
    )
    out = json.loads(resumed.stdout)
    assert out["state"] == "resume" and out["epochs"] == 6
    uninterrupted = train(load_spec(TINY), load_recipe(files["recipe"]), DIGITS, threads=1)
    assert curve_of(out) == curve_of(uninterrupted) and out["error"] == uninterrupted.error
    saved = json.loads((files["run"] / "result.json").read_text())
    assert curve_of(saved) == curve_of(uninterrupted)
    lines = (files["run"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert not list(files["run"].glob(".*.tmp"))


def test_run_folder_contents_and_a_finished_rerun(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files["recipe"].write_text(yaml.safe_dump(tiny_recipe(epochs=1).model_dump()))
    assert main(_cli(files)) == 0
    line = capsys.readouterr().out
    assert line.startswith("tiny: top-1 error ") and "after 1 epochs on digits;" in line
    run = files["run"]
    names = {p.name for p in run.iterdir()}
    expected = {"run.json", "spec.yaml", "recipe.yaml", "metrics.jsonl", "checkpoint.pt"}
    expected.add(".regnet-space-lock")  # one `train` at a time holds a folder (issue 17)
    assert names == expected | {"model.safetensors", "result.json"}
    from safetensors.torch import load_file

    from regnet_space.nn.model import build_model

    resolved = load_spec(run / "spec.yaml")
    assert resolved.num_classes == 10 and len(resolved.stages) == 2
    model = build_model(resolved)
    model.load_state_dict(load_file(run / "model.safetensors"))  # strict: every key, shape
    assert load_recipe(run / "recipe.yaml") == tiny_recipe(epochs=1)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert main([*_cli(files), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "done" and out["epochs"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    # Another recipe in the same folder: refused, then replaced with --force.
    files["recipe"].write_text(yaml.safe_dump(tiny_recipe(epochs=1, seed=3).model_dump()))
    assert main(_cli(files)) == 2
    err = capsys.readouterr().err
    assert "holds a run of another spec, recipe or data (use --force" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert main([*_cli(files), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "new"
    assert load_recipe(run / "recipe.yaml").seed == 3


def _hostile_cases(tmp: Path, files: dict[str, Path]) -> list[tuple[list[str], str]]:
    bad_recipe = tmp / "bad.yaml"
    bad_recipe.write_text("epochs: 1\nbatch_size: 8\nbase_lr: 0.1\ntrain_size: 8\ntest_size: 8\n"
                          "lr_policy: cos\n")  # fmt: skip
    spec, recipe, run = str(files["spec"]), str(files["recipe"]), str(files["run"])
    base = ["train", spec, "--recipe", recipe, "-o", run]
    cases = [
        (["train", spec, "--recipe", str(bad_recipe), "-o", run], "lr_policy: unknown field"),
        (["train", spec, "--recipe", str(tmp / "none.yaml"), "-o", run], "no such file"),
        (["train", str(tmp / "none.yaml"), "--recipe", recipe, "-o", run], "no such file"),
        ([*base, "--data", "cifar10"], "cifar10 needs a root folder"),
        ([*base, "--data", "cifar10", "--data-root", str(tmp / "x")], "no such directory"),
        ([*base, "--data-root", str(tmp)], "digits takes no root"),
        ([*base, "--data", "mnist"], "invalid choice: 'mnist'"),
        ([*base, "--device", "tpu"], "unknown device 'tpu'"),
        ([*base, "--threads", "0"], "--threads: must be at least 1, got 0"),
        (["train", spec, "--recipe", recipe, "-o", str(tmp / "no" / "run")], "no such directory"),
        (["train", spec, "--recipe", recipe, "-o", str(files["spec"])], "is not a directory"),
    ]
    if not torch.cuda.is_available():
        cases.append(([*base, "--device", "cuda"], "CUDA is not available"))
    return cases


def test_hostile_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    cases = _hostile_cases(tmp_path, files)
    spec, recipe = str(files["spec"]), str(files["recipe"])
    cases.append((["train", spec, "--recipe", recipe, "-o", str(tmp_path / "full")], "not empty"))
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code  # type: ignore[assignment]
        err = capsys.readouterr().err
        assert code == 2, argv
        assert message in err and err.count("\n") == 1, (argv, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]


def test_help_explains_every_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--recipe", "--data", "--data-root", "--output", "--device", "--threads"):
        assert flag in out
    assert "base_lr * batch_size / 128" in out and "resumes" in out
