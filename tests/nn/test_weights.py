"""The one weight-file reader (nn.weights): every faulty file is one line, never a raw exception.

Shared by `convert`, `export --weights` and `from_pretrained`: garbage bytes, mutated
checkpoints, shards outside their folder, FIFOs and devices, tensors that would load silently
wrong (integer, bool, NaN, meta) and values that are no tensors at all.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from regnet_space.cli import main as run
from regnet_space.core.errors import BuildError
from regnet_space.core.generator import make_plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.infra.errors import OutputError
from regnet_space.infra.outputs import call_writer
from regnet_space.interop.checkpoints import ConvertError, convert_state_dict, read_checkpoint
from regnet_space.nn import weights
from regnet_space.nn.model import RegNetForImageClassification, RegNetModel, build_model

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "tiny",
    "block": "y",
    "num_classes": 5,
    "stages": [
        {"width": 16, "depth": 1, "group_width": 8},
        {"width": 32, "depth": 1, "group_width": 8},
    ],
}
SPEC_YAML = """name: tiny
block: y
num_classes: 5
stages:
  - {width: 16, depth: 1, group_width: 8}
  - {width: 32, depth: 1, group_width: 8}
"""


def _model() -> torch.nn.Module:
    """The tiny classifier, with the same weights every call."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(spec_from_dict(SPEC))


def _state() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in _model().state_dict().items()}


def _folder(tmp_path: Path, name: str = "hf") -> Path:
    """A Hugging Face directory of the tiny classifier (config.json + model.safetensors)."""
    folder = tmp_path / name
    _model().save_pretrained(folder)
    return folder


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# ---------------------------------------------------------------------------------------------
# Item 7: shards named by the index stay inside the folder and are regular files


def _sharded(folder: Path, shard_names: list[str]) -> None:
    """Replace model.safetensors by an index mapping the weights to the given shard names."""
    state = _state()
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    half = len(keys) // 2
    weight_map = {k: shard_names[0] if i < half else shard_names[-1] for i, k in enumerate(keys)}
    for name in set(shard_names):
        target = folder / name
        if (
            not target.exists()
            and "/" not in name
            and "\0" not in name
            and name not in ("", ".", "..")
        ):
            part = {k: state[k] for k, v in weight_map.items() if v == name}
            save_file(part, str(target))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_sharded_folder_loads(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    want = RegNetForImageClassification.from_pretrained(folder).state_dict()
    _sharded(folder, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    got = RegNetForImageClassification.from_pretrained(folder).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(
    "shard",
    [
        "../outside.safetensors",
        "sub/model.safetensors",
        "ABSOLUTE",
        "..",
        ".",
        "",
        "a\0b.safetensors",
    ],
)
def test_shard_names_outside_the_folder_are_refused(tmp_path: Path, shard: str) -> None:
    folder = _folder(tmp_path)
    outside = tmp_path / "outside.safetensors"
    save_file(_state(), str(outside))  # all the weights, so a silent load would succeed
    (folder / "sub").mkdir()
    save_file(_state(), str(folder / "sub" / "model.safetensors"))
    name = str(outside) if shard == "ABSOLUTE" else shard
    _sharded(folder, ["model-00001-of-00002.safetensors", name])
    with pytest.raises(BuildError) as err:
        RegNetForImageClassification.from_pretrained(folder)
    text = _one_line(err.value)
    assert "model.safetensors.index.json" in text and "shard" in text


def test_a_shard_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    index = {"weight_map": {"embedder.embedder.convolution.weight": 7}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(BuildError, match="shard") as err:
        RegNetModel.from_pretrained(folder)
    _one_line(err.value)


def _refusal(call: str, *paths: Path) -> str:
    """The one-line error `call` (Python, with P0, P1... the paths) ends in, in a subprocess:
    a reader blocked on a FIFO (in C, holding the GIL) fails the test instead of the suite."""
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from regnet_space.infra.errors import RegNetSpaceError\n"
        "from regnet_space.interop.checkpoints import read_checkpoint\n"
        "from regnet_space.nn.model import RegNetModel, RegNetForImageClassification\n"
        + "".join(f"P{i} = Path({str(p)!r})\n" for i, p in enumerate(paths))
        + f"try:\n    {call}\nexcept RegNetSpaceError as exc:\n    print(exc)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{call} blocked")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return _one_line(proc.stdout.rstrip("\n"))


def test_a_shard_that_is_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _sharded(folder, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    shard = folder / "model-00002-of-00002.safetensors"
    shard.unlink()
    os.mkfifo(shard)
    text = _refusal("RegNetForImageClassification.from_pretrained(P0)", folder)
    assert "model-00002-of-00002.safetensors: is a FIFO" in text


def test_a_shard_that_is_a_device_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _sharded(folder, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    shard = folder / "model-00002-of-00002.safetensors"
    shard.unlink()
    shard.symlink_to("/dev/zero")
    with pytest.raises(BuildError, match="is a character device") as err:
        RegNetForImageClassification.from_pretrained(folder)
    _one_line(err.value)


# ---------------------------------------------------------------------------------------------
# Item 9: what from_pretrained loads is checked as convert checks it


def _bin_folder(tmp_path: Path, change: str) -> Path:
    """A directory whose pytorch_model.bin has one weight changed as `change` says."""
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    state = _state()
    key = "regnet.embedder.embedder.convolution.weight"
    if change == "int64":
        state[key] = state[key].round().to(torch.int64)
    elif change == "bool":
        state[key] = state[key] > 0
    elif change == "nan":
        state[key][0, 0, 0, 0] = float("nan")
    elif change == "inf":
        state[key][0, 0, 0, 0] = float("-inf")
    elif change == "meta":
        state[key] = torch.empty(state[key].shape, device="meta")
    elif change == "list":
        state[key] = [1.0, 2.0]  # type: ignore[assignment]
    elif change == "int-key":
        state[7] = state.pop(key)  # type: ignore[index]
    elif change == "not-a-dict":
        torch.save([state[key]], folder / "pytorch_model.bin")
        return folder
    elif change == "sparse":
        state[key] = state[key].to_sparse()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("int64", "dtype int64; weights must be floating point"),
        ("bool", "dtype bool; weights must be floating point"),
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("meta", "a meta tensor"),
        ("list", "not a tensor (list)"),
        ("int-key", "key 7 is not a name"),
        ("not-a-dict", "expected a state dict, got list"),
        ("sparse", "expected a dense one"),
    ],
)
def test_from_pretrained_refuses_what_convert_refuses(
    tmp_path: Path, change: str, message: str
) -> None:
    folder = _bin_folder(tmp_path, change)
    for cls in (RegNetForImageClassification, RegNetModel):
        with pytest.raises(BuildError) as err:
            cls.from_pretrained(folder)
        text = _one_line(err.value)
        assert "pytorch_model.bin" in text and message in text, text


def test_an_integer_count_still_loads(tmp_path: Path) -> None:
    """num_batches_tracked is an integer in the model: an int64 value there is right."""
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    state = _state()
    counts = [k for k in state if k.endswith("num_batches_tracked")]
    assert counts and all(state[k].dtype == torch.int64 for k in counts)
    torch.save(state, folder / "pytorch_model.bin")
    model = RegNetForImageClassification.from_pretrained(folder)
    assert model.state_dict()[counts[0]].dtype == torch.int64


def test_from_pretrained_and_convert_say_the_same(tmp_path: Path) -> None:
    folder = _bin_folder(tmp_path, "bool")
    with pytest.raises(BuildError) as built:
        RegNetForImageClassification.from_pretrained(folder)
    with pytest.raises(ConvertError) as converted:
        convert_state_dict(
            read_checkpoint(folder / "pytorch_model.bin"),
            make_plan(spec_from_dict(SPEC)),
            "hf",
            "hf",
            origin=str(folder / "pytorch_model.bin"),
        )
    assert str(built.value) == str(converted.value)


# ---------------------------------------------------------------------------------------------
# Item 12: garbage and mutated checkpoints are one line, never a raw exception


def _small_checkpoint(legacy: bool) -> bytes:
    buf = io.BytesIO()
    state = {"a.weight": torch.randn(4, 3), "b.bias": torch.zeros(2), "n": torch.tensor(3)}
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(b))
        roll = rng.random()
        if roll < 0.6:
            b[pos] = rng.randrange(256)
        elif roll < 0.8:
            del b[pos : pos + rng.randint(1, 8)]
        else:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(b)


def _with_pickle(data: bytes, rng: random.Random) -> bytes:
    """The zip checkpoint with its data.pkl mutated (the zip itself stays well formed)."""
    members = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            members[name] = zf.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, content in members.items():
            zf.writestr(name, _mutate(content, rng) if name.endswith("data.pkl") else content)
    return out.getvalue()


def _mutants(n: int, seed: int) -> list[bytes]:
    """n mutated checkpoints: raw bytes of both formats, and the pickle inside the zip."""
    rng = random.Random(seed)
    zipped, legacy = _small_checkpoint(False), _small_checkpoint(True)
    makers = (
        lambda: _mutate(zipped, rng),
        lambda: _mutate(legacy, rng),
        lambda: _with_pickle(zipped, rng),
    )
    return [makers[i % 3]() for i in range(n)]


def test_mutated_checkpoints_load_or_fail_in_one_line(tmp_path: Path) -> None:
    """600 seeded mutations (the seed found IndexError, AssertionError and TypeError before)."""
    target = tmp_path / "m.pth"
    outcomes = {"loaded": 0, "refused": 0}
    for data in _mutants(600, seed=1):
        target.write_bytes(data)
        try:
            read_checkpoint(target)
        except ConvertError as exc:
            assert str(exc).startswith(f"{target}: "), str(exc)
            _one_line(exc)
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 400 and outcomes["loaded"] > 0  # both kinds were exercised


def test_mutated_pytorch_model_bin_in_from_pretrained(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    buf = io.BytesIO()
    torch.save(_state(), buf)
    rng = random.Random(7)
    for i in range(60):
        data = _mutate(buf.getvalue(), rng) if i % 2 else _with_pickle(buf.getvalue(), rng)
        (folder / "pytorch_model.bin").write_bytes(data)
        try:
            RegNetForImageClassification.from_pretrained(folder)
        except BuildError as exc:
            _one_line(exc)


@pytest.mark.parametrize(
    "content",
    [b"q\0.", b"\x80\x02]q\x00(K\x01K\x02e.", b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01N.", b"PK"],
)
def test_tiny_garbage_is_refused_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    bad = tmp_path / "b.pth"
    bad.write_bytes(content)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC_YAML)
    commands = [
        ["convert", str(bad), "--from", "hf", "--spec", str(spec), "-o", str(tmp_path / "o.pt")],
        ["export", str(spec), "--weights", str(bad), "-o", str(tmp_path / "o.pt2")],
    ]
    for argv in commands:
        assert run(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "b.pth" in err, err
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o.pt2").exists()


# ---------------------------------------------------------------------------------------------
# Item 20: FIFOs and devices named for what they are; a full disk under torch.save


def test_a_fifo_or_device_given_as_a_checkpoint_says_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    assert _refusal("read_checkpoint(P0)", fifo) == (
        f"{fifo}: is a FIFO, not a regular file; expected a checkpoint file"
    )
    fifo_st = tmp_path / "w.safetensors"
    os.mkfifo(fifo_st)
    assert "w.safetensors: is a FIFO" in _refusal("read_checkpoint(P0)", fifo_st)
    with pytest.raises(ConvertError, match="/dev/zero: is a character device"):
        read_checkpoint("/dev/zero")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC_YAML)
    argv = ["convert", str(fifo), "--from", "hf", "--spec", str(spec), "-o", str(tmp_path / "o.pt")]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "w.pth: is a FIFO" in err and "no such file" not in err


def test_a_fifo_named_pytorch_model_bin_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "pytorch_model.bin")
    assert "pytorch_model.bin: is a FIFO" in _refusal("RegNetModel.from_pretrained(P0)", folder)


def test_torch_save_on_a_full_device_says_no_space(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full file system does."""
    shown = tmp_path / "out.pt"
    with pytest.raises(OutputError) as err:
        state = {"w": torch.zeros(10_000)}
        call_writer(lambda tmp: weights.save_torch(state, tmp), Path("/dev/full"), shown)
    assert str(err.value) == f"{shown}: cannot write: no space left on device"
