"""`regnet-space train -o`'s run folder under attack: two writers, hostile files under our
names, damaged checkpoints and results, read-only mounts, unreadable images, a diverged loss;
and the trainer's hook and global state (the on_epoch decision, cuDNN's flag)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from study_helpers import in_read_only_mount
from test_train import DIGITS, TINY, curve_of, tiny_recipe

from regnet_space.cli import main
from regnet_space.core.reader import load_spec
from regnet_space.study.data import DataSpec
from regnet_space.study.recipe import load_recipe
from regnet_space.study.trainer import FolderPolicy, train

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _files(tmp: Path, **recipe: Any) -> dict[str, Path]:
    spec = tmp / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(**recipe).model_dump()))
    return {"spec": spec, "recipe": path, "run": tmp / "run"}


def _argv(files: dict[str, Path], *extra: str) -> list[str]:
    spec, recipe, run = str(files["spec"]), str(files["recipe"]), str(files["run"])
    return ["train", spec, "--recipe", recipe, "-o", run, "--threads", "1", *extra]


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file of a run folder; not the lock, which records who last held the folder."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.iterdir()):
        if p.name == ".regnet-space-lock":
            continue
        st = p.lstat()
        regular = p.is_file() and not p.is_symlink()
        out[p.name] = p.read_bytes() if regular else f"{st.st_mode} {st.st_ino} {st.st_size}"
    return out


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    got = main(argv)
    err = capsys.readouterr().err
    assert got == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# Issue 17, item 2: one `train` at a time in a run folder


def test_a_second_train_into_a_held_folder_is_refused(tmp_path: Path) -> None:
    files = _files(tmp_path, epochs=40)
    first = subprocess.Popen(
        [sys.executable, "-m", "regnet_space", *_argv(files)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = files["run"] / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            if metrics.exists():  # the first run holds the folder and has started training
                break
            time.sleep(0.01)
        assert first.poll() is None
        other = tmp_path / "other.yaml"
        other.write_text(yaml.safe_dump(tiny_recipe(epochs=40, seed=5).model_dump()))
        argv = _argv({**files, "recipe": other}, "--force")
        second = subprocess.run(
            [sys.executable, "-m", "regnet_space", *argv],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1
        assert f"held by pid {first.pid} on " in second.stderr
        assert "another run is training into this folder" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # The folder is the first run's, whole: its recipe, its identity.
    assert load_recipe(files["run"] / "recipe.yaml").seed == 0
    identity = json.loads((files["run"] / "run.json").read_text())
    assert identity["recipe"]["seed"] == 0


# ---------------------------------------------------------------------------------------------
# Issue 17, items 3 and 14: --force never unlinks what we did not write


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run folder (and its checkpoint) to copy and damage."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    train(load_spec(TINY), tiny_recipe(epochs=2), DIGITS, threads=1, run_dir=folder)
    return folder


def _copy_run(finished: Path, tmp: Path) -> dict[str, Path]:
    files = _files(tmp, epochs=2)
    shutil.copytree(finished, files["run"])
    return files


@pytest.mark.parametrize("what", ["fifo", "device-link", "directory"])
def test_force_refuses_what_is_not_a_regular_file(
    what: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _copy_run(finished_run, tmp_path)
    target = files["run"] / "metrics.jsonl"
    target.unlink()
    if what == "fifo":
        os.mkfifo(target)
    elif what == "device-link":
        target.symlink_to("/dev/null")
    else:
        target.mkdir()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_recipe(epochs=2, seed=9).model_dump()))
    before = _snapshot(files["run"])
    err = _one_line(capsys, _argv({**files, "recipe": other}, "--force"))
    assert "metrics.jsonl: is a" in err, err
    assert _snapshot(files["run"]) == before  # nothing removed, nothing replaced


# ---------------------------------------------------------------------------------------------
# Issue 17, item 13: a damaged checkpoint or result is one line naming the file


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/regnet-space-pwned",))


def _damaged_checkpoints(good: dict[str, Any], other_model: dict[str, Any]) -> dict[str, Any]:
    """Damaged checkpoint contents: bytes, or an object torch.save writes."""
    curve = good["curve"]
    return {
        "garbage": b"q\0.",
        "random": bytes(range(256)) * 8,
        "empty": b"",
        "a list": [1, 2, 3],
        "no model key": {k: v for k, v in good.items() if k != "model"},
        "wrong shapes": {**good, "model": other_model},
        "bad curve": {**good, "curve": [{**curve[0], "test_error": float("nan")}, curve[1]]},
        "curve of other epochs": {**good, "curve": [curve[1], curve[0]]},
        "epoch -5": {**good, "epoch": -5},
        "epoch as text": {**good, "epoch": "2"},
        "optimizer garbage": {**good, "optimizer": {"state": 5, "param_groups": "x"}},
        "malicious pickle": pickle.dumps(_RunsCode()),
    }


@pytest.fixture(scope="module")
def checkpoint_cases(finished_run: Path) -> dict[str, Any]:
    good = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    from regnet_space.nn.model import build_model

    wider = {**TINY, "stem_width": 24, "num_classes": 10}
    other_model = build_model(load_spec(wider)).state_dict()
    cases = _damaged_checkpoints(good, other_model)
    raw = (finished_run / "checkpoint.pt").read_bytes()
    cases["truncated"] = raw[: len(raw) // 2]
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "random",
        "empty",
        "truncated",
        "a list",
        "no model key",
        "wrong shapes",
        "bad curve",
        "curve of other epochs",
        "epoch -5",
        "epoch as text",
        "optimizer garbage",
        "malicious pickle",
        "fifo",
    ],
)
def test_a_damaged_checkpoint_is_one_line_and_the_folder_stays(
    case: str,
    checkpoint_cases: dict[str, Any],
    finished_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = _copy_run(finished_run, tmp_path)
    (files["run"] / "result.json").unlink()  # unfinished: the rerun resumes from checkpoint.pt
    ckpt = files["run"] / "checkpoint.pt"
    ckpt.unlink()
    if case == "fifo":
        os.mkfifo(ckpt)
    elif isinstance(checkpoint_cases[case], bytes):
        ckpt.write_bytes(checkpoint_cases[case])
    else:
        torch.save(checkpoint_cases[case], ckpt)
    before = _snapshot(files["run"])
    err = _one_line(capsys, _argv(files))
    assert f"{ckpt}: " in err, err
    assert _snapshot(files["run"]) == before
    assert not Path("/tmp/regnet-space-pwned").exists()


@pytest.mark.parametrize(
    "text",
    ['{"error": 3.0, "epochs": 2, "cur', "[1, 2]", "", '{"error": NaN}', "\udcff"],
    ids=["truncated", "a list", "empty", "nan", "not utf-8"],
)
def test_a_damaged_result_is_one_line(
    text: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _copy_run(finished_run, tmp_path)
    result = files["run"] / "result.json"
    result.write_bytes(text.encode("utf-8", "surrogateescape"))
    before = _snapshot(files["run"])
    err = _one_line(capsys, _argv(files))
    assert f"{result}: " in err
    assert _snapshot(files["run"]) == before


# ---------------------------------------------------------------------------------------------
# Issue 17, item 14: read-only mounts


def test_train_into_a_read_only_mount_is_one_line(tmp_path: Path) -> None:
    files = _files(tmp_path, epochs=1)
    py = f"{sys.executable} -m regnet_space train {files['spec']} --recipe {files['recipe']}"
    for i, target in enumerate(("$MNT/run", "$MNT/sub/run", "$MNT")):
        setup = "mkdir -p $MNT/sub" if "sub" in target else "true"
        (tmp_path / str(i)).mkdir()
        proc = in_read_only_mount(tmp_path / str(i), f"{py} -o {target}", setup)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "read-only file system" in proc.stderr


# ---------------------------------------------------------------------------------------------
# Issue 17, item 15: a failed run and unreadable images are one line


def test_a_diverged_run_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(tmp_path, epochs=3, base_lr=1e4)
    err = _one_line(capsys, _argv(files), code=1)
    assert "training diverged: loss is nan in epoch 1" in err


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind", ["corrupt png", "bomb png", "truncated jpeg"])
def test_an_unreadable_image_is_one_line_naming_it(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_study_data import write_image_folder

    root = tmp_path / "images"
    write_image_folder(root, {"train": 2, "val": 1})
    bad = root / "train" / "dog" / ("1.jpg" if "jpeg" in kind else "1.png")
    (root / "train" / "dog" / "1.png").unlink()
    if kind == "corrupt png":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    elif kind == "bomb png":
        bad.write_bytes(_png_header(20000, 20000))
    else:
        from PIL import Image

        big = root / "big.jpg"
        Image.new("RGB", (64, 64), (200, 10, 10)).save(big, quality=90)
        bad.write_bytes(big.read_bytes()[:300])
        big.unlink()
    files = _files(tmp_path, epochs=1, batch_size=2)  # every training image in a batch
    argv = [*_argv(files), "--data", "imagefolder", "--data-root", str(root)]
    err = _one_line(capsys, argv)
    assert f"{bad}: not a readable image" in err, err


# ---------------------------------------------------------------------------------------------
# The trainer's hook and what it leaves of global state


def test_on_epoch_sees_each_epoch_and_may_stop_training(tmp_path: Path) -> None:
    recipe = tiny_recipe(epochs=4)
    seen: list[float] = []

    def watch(m: Any) -> None:
        seen.append(m.test_error)

    full = train(load_spec(TINY), recipe, DIGITS, threads=1, on_epoch=watch)
    assert seen == [m.test_error for m in full.curve] and not full.stopped
    folder = tmp_path / "stopped"

    def stop_after_two(m: Any) -> str:
        return "stop" if m.epoch == 2 else "continue"

    stopped = train(
        load_spec(TINY), recipe, DIGITS, threads=1, run_dir=folder, on_epoch=stop_after_two
    )
    assert stopped.stopped and stopped.epochs == 2
    assert curve_of(stopped) == curve_of(full)[:2]  # the same first two epochs, then it ends
    saved = json.loads((folder / "result.json").read_text())
    assert saved["stopped"] is True and saved["epochs"] == 2
    again = train(load_spec(TINY), recipe, DIGITS, threads=1, run_dir=folder)
    assert again == stopped  # a stopped run is finished: it is not trained further


def test_a_policy_drops_the_checkpoint_and_weights(tmp_path: Path) -> None:
    policy = FolderPolicy(keep_checkpoint=False, keep_weights=False)
    folder = tmp_path / "lean"
    train(load_spec(TINY), tiny_recipe(epochs=1), DIGITS, threads=1, run_dir=folder, policy=policy)
    names = {p.name for p in folder.iterdir()}
    assert names == {"run.json", "spec.yaml", "recipe.yaml", "metrics.jsonl", "result.json",
                     ".regnet-space-lock"}  # fmt: skip


def test_cudnn_benchmark_is_restored() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    before = torch.backends.cudnn.benchmark
    try:
        for flag in (False, True):
            torch.backends.cudnn.benchmark = flag
            seen: list[bool] = []

            def watch(m: Any, seen: list[bool] = seen) -> None:
                seen.append(torch.backends.cudnn.benchmark)

            train(load_spec(TINY), tiny_recipe(epochs=1), DIGITS, threads=1, device=device,
                  on_epoch=watch)  # fmt: skip
            assert seen == [flag or device == "cuda"]  # on during a CUDA run
            assert torch.backends.cudnn.benchmark is flag  # and as it was after it
    finally:
        torch.backends.cudnn.benchmark = before


def test_synthetic_data_still_trains_with_a_folder(tmp_path: Path) -> None:
    result = train(load_spec(TINY), tiny_recipe(epochs=1, batch_size=256),
                   DataSpec(name="synthetic"), threads=1, run_dir=tmp_path / "s")  # fmt: skip
    assert result.synthetic and (tmp_path / "s" / "result.json").exists()
