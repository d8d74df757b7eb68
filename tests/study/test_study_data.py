"""Data sets: root checks, CIFAR files in their real formats, a malicious pickle, image folders,
and the on-device batches (split, order, crops and flips) the trainer consumes."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from regnet_space.study.data import (
    DataSpec,
    check_data,
    num_classes,
    read_cifar,
    read_pickle_batch,
)
from regnet_space.study.errors import StudyError
from regnet_space.study.loaders import TensorLoader, make_loader
from regnet_space.study.recipe import load_recipe

RECIPE = {"epochs": 1, "batch_size": 16, "base_lr": 0.1, "train_size": 32, "test_size": 32}


# ---------------------------------------------------------------------------------------------
# CIFAR files, written byte for byte as the official ones


def _s(b: bytes) -> bytes:
    """A Python 2 str in a protocol-2 pickle (SHORT_BINSTRING or BINSTRING)."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<I", len(b)) + b


def _i(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def py2_batch(data: np.ndarray, labels: list[int], label_key: bytes) -> bytes:
    """A batch as the official python-version files are: a Python 2 cPickle (protocol 2)
    of {batch_label, data: uint8 ndarray (N, 3072), labels} with numpy 1.x's array pickle."""
    n, m = data.shape
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _i(0) + b"\x85"
        + _s(b"b") + b"\x87R"
        + b"(" + _i(1) + _i(n) + _i(m) + b"\x86"
        + b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1) + b"\x87R"
        + b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb"
        + b"\x89" + _s(data.tobytes()) + b"tb"
    )  # fmt: skip
    items = b"]" + (b"(" + b"".join(_i(v) for v in labels) + b"e" if labels else b"")
    return (
        b"\x80\x02}(" + _s(b"batch_label") + _s(b"training batch 1 of 5")
        + _s(b"data") + array + _s(label_key) + items + b"u."
    )  # fmt: skip


def images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def write_cifar10_py(root: Path, n: int = 8, protocol: int | None = None) -> Path:
    """cifar-10-batches-py/ with 5 train batches and a test batch of n images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        x, y = images(n, i)
        if protocol is None:
            raw = py2_batch(x, y, b"labels")
        else:
            raw = pickle.dumps({b"data": x, b"labels": y}, protocol=protocol)
        (folder / name).write_bytes(raw)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}, 2))
    return folder


def write_cifar10_bin(root: Path, n: int = 8) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        x, y = images(n, i)
        rows = np.concatenate([np.asarray(y, dtype=np.uint8)[:, None], x], axis=1)
        (folder / name).write_bytes(rows.tobytes())
    return folder


def test_cifar10_python_batches_read_exactly(tmp_path: Path) -> None:
    write_cifar10_py(tmp_path)
    data = check_data(DataSpec(name="cifar10", root=str(tmp_path)))
    assert data.root == str(tmp_path.resolve()) and num_classes(data) == 10
    x, y = read_cifar(data, "train")
    assert x.shape == (40, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    x0, y0 = images(8, 0)
    # rows are the R, then G, then B planes of 32 x 32
    assert np.array_equal(x[:8, 0], x0[:, :1024].reshape(8, 32, 32))
    assert np.array_equal(x[:8, 2], x0[:, 2048:].reshape(8, 32, 32))
    assert y[:8].tolist() == y0
    xt, yt = read_cifar(data, "test")
    assert np.array_equal(xt.reshape(8, -1), images(8, 5)[0]) and yt.tolist() == images(8, 5)[1]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_of_the_same_batches_also_read(tmp_path: Path, protocol: int) -> None:
    write_cifar10_py(tmp_path, protocol=protocol)
    x, y = read_cifar(DataSpec(name="cifar10", root=str(tmp_path / "cifar-10-batches-py")), "test")
    assert np.array_equal(x.reshape(8, -1), images(8, 5)[0]) and y.tolist() == images(8, 5)[1]


def test_cifar10_binary_version_and_root_forms(tmp_path: Path) -> None:
    folder = write_cifar10_bin(tmp_path)
    for root in (tmp_path, folder):
        x, y = read_cifar(check_data(DataSpec(name="cifar10", root=str(root))), "train")
        assert x.shape == (40, 3, 32, 32)
        assert np.array_equal(x[8:16].reshape(8, -1), images(8, 1)[0])
        assert y[8:16].tolist() == images(8, 1)[1]


def test_cifar100_fine_labels_in_both_versions(tmp_path: Path) -> None:
    py = tmp_path / "py" / "cifar-100-python"
    py.mkdir(parents=True)
    x, _ = images(6, 0)
    fine = [0, 99, 50, 1, 2, 3]
    for name in ("train", "test"):
        (py / name).write_bytes(py2_batch(x, fine, b"fine_labels"))
    binary = tmp_path / "bin" / "cifar-100-binary"
    binary.mkdir(parents=True)
    rows = np.concatenate([np.zeros((6, 1), np.uint8), np.asarray(fine, np.uint8)[:, None], x], 1)
    for name in ("train.bin", "test.bin"):
        (binary / name).write_bytes(rows.tobytes())
    for root in (tmp_path / "py", tmp_path / "bin"):
        data = check_data(DataSpec(name="cifar100", root=str(root)))
        xx, yy = read_cifar(data, "train")
        assert num_classes(data) == 100 and yy.tolist() == fine
        assert np.array_equal(xx.reshape(6, -1), x)


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))

    marker = ""


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    folder = write_cifar10_py(tmp_path)
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, 2))
    data = check_data(DataSpec(name="cifar10", root=str(tmp_path)))  # names and sizes only
    with pytest.raises(StudyError) as err:
        read_cifar(data, "test")
    assert "not a CIFAR batch pickle (refused global posix.system)" in str(err.value)
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps([1, 2], 2), "a list, expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, 2), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, 2), "rows of"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, 2), "2 labels"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, 2), "integers"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]}, 2)[:50], "pickle"),
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x7f"
            b"\x85U\x01b\x87R.",
            "refused array reconstruction",
        ),
        (b"garbage", "not a CIFAR batch pickle"),
    ],
)
def test_malformed_batches_are_one_line(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises(StudyError, match=message) as err:
        read_pickle_batch(path, b"labels")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    folder = write_cifar10_bin(tmp_path)
    raw = bytearray((folder / "test_batch.bin").read_bytes())
    raw[0] = 10
    (folder / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(StudyError, match=r"labels outside 0\.\.9 in the test split"):
        read_cifar(DataSpec(name="cifar10", root=str(tmp_path)), "test")


# ---------------------------------------------------------------------------------------------
# check_data


def test_check_data_refusals_are_one_line(tmp_path: Path) -> None:
    write_cifar10_bin(tmp_path / "ok")
    (tmp_path / "ok" / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(b"x" * 100)
    (tmp_path / "empty").mkdir()
    cases = [
        (DataSpec(name="cifar10"), "cifar10 needs a root folder"),
        (DataSpec(name="cifar10", root=str(tmp_path / "nope")), "no such directory"),
        (DataSpec(name="cifar10", root=str(tmp_path / "empty")), "no cifar10 files found"),
        (DataSpec(name="cifar100", root=str(tmp_path / "empty")), "cifar-100-python/"),
        (DataSpec(name="cifar10", root=str(tmp_path / "ok")), "not a whole number of 3073-byte"),
        (DataSpec(name="digits", root=str(tmp_path)), "digits takes no root"),
        (DataSpec(name="imagefolder", root=str(tmp_path / "empty")), "no train/ folder"),
    ]
    for spec, message in cases:
        with pytest.raises(StudyError, match=message) as err:
            check_data(spec)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="name"):
        DataSpec(name="mnist")  # type: ignore[arg-type]
    assert check_data(DataSpec(name="digits")) == DataSpec(name="digits")


def test_check_data_resolves_a_root_relative_to_base(tmp_path: Path) -> None:
    write_cifar10_bin(tmp_path / "data")
    got = check_data(DataSpec(name="cifar10", root="data"), base=tmp_path)
    assert got.root == str((tmp_path / "data").resolve())


def write_image_folder(root: Path, sizes: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in sizes.items():
        for c in ("cat", "dog", "emu"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for k in range(per_class):
                h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{k}.png")


def test_image_folders(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"train": 3, "val": 1})
    data = check_data(DataSpec(name="imagefolder", root=str(tmp_path)))
    assert num_classes(data) == 3
    recipe = load_recipe(RECIPE | {"batch_size": 4, "train_size": 16, "test_size": 12})
    loader = make_loader(data, recipe, 3, torch.device("cpu"))
    assert (loader.n_train, loader.n_test, loader.steps_per_epoch()) == (9, 3, 2)
    first = list(loader.train_batches(0))
    again = list(loader.train_batches(0))
    assert [tuple(x.shape) for x, _ in first] == [(4, 3, 16, 16)] * 2
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    assert not torch.equal(first[0][0], next(iter(loader.train_batches(1)))[0])
    ((x, y),) = list(loader.test_batches())
    assert x.shape == (3, 3, 12, 12) and y.tolist() == [0, 1, 2]
    (tmp_path / "val" / "fox").mkdir()
    (tmp_path / "val" / "fox" / "a.png").write_bytes((tmp_path / "val/cat/0.png").read_bytes())
    with pytest.raises(StudyError, match="class 'fox' is not in train/"):
        check_data(data)
    (tmp_path / "train" / "fox").mkdir()
    with pytest.raises(StudyError, match="fox: no image files"):
        check_data(data)


# ---------------------------------------------------------------------------------------------
# On-device batches


def test_digits_split_is_fixed_and_batches_are_seeded(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE | {"batch_size": 100, "train_size": 16, "test_size": 12})
    loader = make_loader(DataSpec(name="digits"), recipe, 3, torch.device("cpu"))
    assert isinstance(loader, TensorLoader)
    assert (loader.n_train, loader.n_test, loader.steps_per_epoch()) == (1437, 360, 14)
    other = make_loader(
        DataSpec(name="digits"), load_recipe(recipe.model_dump() | {"seed": 5}), 3,
        torch.device("cpu"),
    )  # fmt: skip
    assert torch.equal(loader.test_y, other.test_y)  # the split does not follow the seed
    assert loader.train_x.shape[1:] == (1, 16, 16) and loader.test_x.shape[1:] == (1, 12, 12)
    x, y = next(iter(loader.train_batches(0)))
    assert x.shape == (100, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 2])  # grey digits fed to an RGB stem
    same = next(iter(loader.train_batches(0)))
    assert torch.equal(x, same[0]) and torch.equal(y, same[1])
    assert not torch.equal(y, next(iter(other.train_batches(0)))[1])
    # every training image is seen once per epoch
    labels = torch.cat([b for _, b in loader.train_batches(3)])
    assert len(labels) == 1400 and not loader.flip and loader.pad == 2
    # the 1,400 labels of an epoch are 1,400 distinct training images' labels
    counts = torch.bincount(labels, minlength=10)
    assert (counts <= torch.bincount(loader.train_y, minlength=10)).all() and counts.min() > 100


def test_batched_crops_and_flips_equal_per_image_ones() -> None:
    """The tensor-indexing crop and flip against a plain per-image reference."""
    g = torch.Generator().manual_seed(0)
    n, pad, side = 12, 3, 8
    train_x = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    loader = TensorLoader(
        train_x=train_x,
        train_y=torch.arange(n),
        test_x=train_x,
        test_y=torch.arange(n),
        normalize=lambda x, channels: x,
        channels=3,
        batch_size=5,
        seed=7,
        pad=pad,
        flip=True,
    )
    from regnet_space.study.loaders import epoch_seed

    batches = list(loader.train_batches(2))
    rg = torch.Generator().manual_seed(epoch_seed(7, 2))
    order = torch.randperm(n, generator=rg)
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=rg)
    flips = torch.rand(n, generator=rg) < 0.5
    got = torch.cat([x for x, _ in batches])
    assert got.shape == (10, 3, side, side)
    for k in range(10):
        i = int(order[k])
        padded = torch.zeros(3, side + 2 * pad, side + 2 * pad, dtype=torch.uint8)
        padded[:, pad : pad + side, pad : pad + side] = train_x[i]
        dy, dx = int(shifts[k, 0]), int(shifts[k, 1])
        want = padded[:, dy : dy + side, dx : dx + side]
        if flips[k]:
            want = want.flip(2)
        assert torch.equal(got[k], want)
    assert flips[:10].any() and not flips[:10].all()


def test_cifar_loader_normalizes_and_resizes(tmp_path: Path) -> None:
    write_cifar10_py(tmp_path, n=16)
    recipe = load_recipe(RECIPE | {"train_size": 16, "test_size": 32, "augment": False})
    loader = make_loader(
        DataSpec(name="cifar10", root=str(tmp_path)), recipe, 3, torch.device("cpu")
    )
    assert isinstance(loader, TensorLoader)
    assert loader.train_x.shape == (80, 3, 16, 16) and loader.test_x.shape == (16, 3, 32, 32)
    ((x, _),) = list(loader.test_batches())
    raw = torch.from_numpy(images(16, 5)[0]).view(16, 3, 32, 32).float()
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1) * 255
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    with pytest.raises(StudyError, match="cifar10 has 3 channels, the spec's num_channels is 1"):
        make_loader(DataSpec(name="cifar10", root=str(tmp_path)), recipe, 1, torch.device("cpu"))


def test_training_runs_on_cifar_files_and_image_folders(tmp_path: Path) -> None:
    from regnet_space.core.reader import load_spec
    from regnet_space.study.trainer import train

    write_cifar10_bin(tmp_path / "c10", n=16)
    write_image_folder(tmp_path / "folder", {"train": 4, "val": 2})
    stages = [
        {"width": 8, "depth": 1, "group_width": 8},
        {"width": 16, "depth": 1, "group_width": 8},
    ]
    spec = load_spec({"name": "t", "block": "y", "stem_width": 8, "stages": stages})
    recipe = load_recipe(RECIPE | {"epochs": 2, "batch_size": 8, "train_size": 16, "test_size": 16})
    for data, n_test in [
        (DataSpec(name="cifar10", root=str(tmp_path / "c10")), 16),
        (DataSpec(name="imagefolder", root=str(tmp_path / "folder")), 6),
    ]:
        result = train(spec, recipe, data, threads=1)
        assert result.epochs == 2 and not result.synthetic
        # the error is a whole number of the test images, in percent
        wrong = result.error * n_test / 100
        assert abs(wrong - round(wrong)) < 1e-9 and 0 <= wrong <= n_test


def test_digits_read_without_importing_sklearn_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    from regnet_space.study.loaders import digits_arrays

    images, targets = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and images.dtype == reference.images.dtype
    assert np.array_equal(targets, reference.target)
