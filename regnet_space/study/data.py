"""Data sets of a study: which one, where its files are, and readers that run no foreign code.

`check_data` validates a data root cheaply (names and sizes of files, no decoding, no torch)
so that a study can refuse a bad root before any training starts. The CIFAR readers return
numpy arrays; CIFAR's python-version batches are pickles, read here with an unpickler that
rebuilds numeric numpy arrays, dicts, lists, bytes and numbers and refuses every other global.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import StudyError

DataName = Literal["digits", "cifar10", "cifar100", "imagefolder", "synthetic"]
DATA_NAMES: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagefolder", "synthetic")

# A CIFAR batch file is about 31 MB; anything this large is not one.
MAX_CIFAR_FILE_BYTES = 1 << 30
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})
MAX_CLASSES = 100_000
CIFAR_SIDE = 32
CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE


class DataSpec(BaseModel):
    """A data set by name, with the folder of its files where it has some."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: DataName = Field(description="digits | cifar10 | cifar100 | imagefolder | synthetic")
    root: str | None = Field(None, min_length=1, max_length=4096, description="Data folder.")


# ---------------------------------------------------------------------------------------------
# Layouts of the CIFAR folders (python pickles or the binary records)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's files are and how to read them."""

    folder: Path
    binary: bool
    train: tuple[str, ...]
    test: str
    label_bytes: int  # binary records: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine)
    label_key: bytes  # pickles: b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100)


_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _cifar_layouts(name: str, root: Path) -> list[CifarLayout]:
    if name == "cifar10":
        py = ("cifar-10-batches-py", _CIFAR10_TRAIN, "test_batch", 1, b"labels")
        bn = ("cifar-10-batches-bin", tuple(f + ".bin" for f in _CIFAR10_TRAIN), "test_batch.bin")
        bn_extra: tuple[int, bytes] = (1, b"labels")
    else:
        py = ("cifar-100-python", ("train",), "test", 2, b"fine_labels")
        bn = ("cifar-100-binary", ("train.bin",), "test.bin")
        bn_extra = (2, b"fine_labels")
    out = []
    for folder in (root, root / py[0]):
        out.append(CifarLayout(folder, False, py[1], py[2], py[3], py[4]))
    for folder in (root, root / bn[0]):
        out.append(CifarLayout(folder, True, bn[1], bn[2], *bn_extra))
    return out


def cifar_layout(name: str, root: Path) -> CifarLayout:
    """The first complete CIFAR layout under `root` (the batch folder itself or its parent)."""
    for layout in _cifar_layouts(name, root):
        files = [layout.folder / f for f in (*layout.train, layout.test)]
        if all(f.is_file() for f in files):
            for f in files:
                _check_cifar_file(f, layout)
            return layout
    expected = "cifar-10-batches-py/ (data_batch_1..5, test_batch) or cifar-10-batches-bin/"
    if name == "cifar100":
        expected = "cifar-100-python/ (train, test) or cifar-100-binary/ (train.bin, test.bin)"
    raise StudyError(f"{root}: no {name} files found; expected {expected}")


def _check_cifar_file(path: Path, layout: CifarLayout) -> None:
    size = path.stat().st_size
    if size > MAX_CIFAR_FILE_BYTES:
        raise StudyError(f"{path}: {size} bytes, too large for a CIFAR batch file")
    if layout.binary and (size == 0 or size % (layout.label_bytes + CIFAR_PIXELS)):
        record = layout.label_bytes + CIFAR_PIXELS
        raise StudyError(f"{path}: {size} bytes is not a whole number of {record}-byte records")
    if not os.access(path, os.R_OK):
        raise StudyError(f"{path}: not readable")


# ---------------------------------------------------------------------------------------------
# Checking a data spec


def _resolve_root(data: DataSpec, base: Path | None) -> Path:
    if data.root is None:
        raise StudyError(f"data: {data.name} needs a root folder (data.root / --data-root)")
    root = Path(data.root).expanduser()
    if base is not None and not root.is_absolute():
        root = base / root
    if not root.is_dir():
        raise StudyError(f"{root}: no such directory (data root of {data.name})")
    return root.resolve()


def _class_dirs(folder: Path) -> list[str]:
    """Sorted names of the non-empty class folders of an image folder split."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name[0] != ".")
    except OSError as exc:
        raise StudyError(f"{folder}: cannot list: {exc.strerror or exc}") from None
    if not names:
        raise StudyError(f"{folder}: no class folders")
    if len(names) > MAX_CLASSES:
        raise StudyError(f"{folder}: more than {MAX_CLASSES} class folders")
    for name in names:
        with os.scandir(folder / name) as it:
            if not any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES for e in it):
                raise StudyError(f"{folder / name}: no image files (.jpg, .png, ...)")
    return names


def image_classes(root: Path) -> list[str]:
    """The class names of an image folder (train/ and val/), checked to agree."""
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise StudyError(f"{root}: no {split}/ folder (imagefolder expects train/ and val/)")
    train = _class_dirs(root / "train")
    val = _class_dirs(root / "val")
    unknown = sorted(set(val) - set(train))
    if unknown:
        raise StudyError(f"{root / 'val'}: class {unknown[0]!r} is not in train/")
    return train


def check_data(data: DataSpec, base: Path | None = None) -> DataSpec:
    """The data spec with its root resolved (relative to `base`) and its files checked."""
    if data.name in ("digits", "synthetic"):
        if data.root is not None:
            raise StudyError(f"data: {data.name} takes no root, got {data.root!r}")
        if data.name == "digits":
            _check_sklearn()
        return data
    root = _resolve_root(data, base)
    if data.name in ("cifar10", "cifar100"):
        cifar_layout(data.name, root)
    else:
        image_classes(root)
    return data.model_copy(update={"root": str(root)})


def _check_sklearn() -> None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise StudyError(
            "data: digits needs scikit-learn (pip install scikit-learn); "
            "or use --data synthetic for speed runs"
        )


def num_classes(data: DataSpec) -> int:
    """Classes of the data set (imagefolder: its train/ class folders; needs a root)."""
    if data.name in ("digits", "cifar10", "synthetic"):
        return 10
    if data.name == "cifar100":
        return 100
    return len(image_classes(_resolve_root(data, None)))


# ---------------------------------------------------------------------------------------------
# Reading CIFAR without running pickle code


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array-pickle first step, limited to the empty array it always starts from."""
    if cls is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError("refused array reconstruction")
    return np.ndarray((0,), dtype=dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array pickle: an array over in-band bytes (copied, so writable)."""
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("refused array buffer")
    return np.frombuffer(bytes(buf), dtype=np.dtype(dtype)).reshape(shape, order=order).copy()


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """Python 3's protocol-2 spelling of a bytes object: _codecs.encode(text, "latin1")."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode call")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: what numpy needs to rebuild an array."""
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _reconstruct
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "ndarray")] = np.ndarray
        allowed[(mod, "dtype")] = np.dtype
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes, numbers and numpy arrays; refuses any other global."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def read_pickle_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one python-version CIFAR batch."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StudyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise StudyError(f"{path}: not a CIFAR batch pickle ({reason})") from None
    except (IndexError, KeyError, RecursionError, MemoryError, OverflowError):
        raise StudyError(f"{path}: not a CIFAR batch pickle (malformed)") from None
    if not isinstance(obj, dict):
        raise StudyError(f"{path}: not a CIFAR batch (a {type(obj).__name__}, expected a dict)")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(label_key, obj.get(label_key.decode()))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise StudyError(f"{path}: 'data' is not a uint8 matrix of images")
    if data.shape[1] != CIFAR_PIXELS:
        raise StudyError(f"{path}: rows of {data.shape[1]} bytes, expected {CIFAR_PIXELS}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise StudyError(f"{path}: {label_key.decode()!r} is not a list of {len(data)} labels")
    integers = (
        all(type(v) is int for v in labels)
        if isinstance(labels, list)
        else labels.dtype.kind in "iu" and labels.ndim == 1
    )
    if not integers:
        raise StudyError(f"{path}: labels must be integers")
    y = np.asarray(labels, dtype=np.int64)
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), y


def read_binary_batch(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one binary-version CIFAR file (the last label byte is the label)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise StudyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    record = label_bytes + CIFAR_PIXELS
    if raw.size == 0 or raw.size % record:
        raise StudyError(f"{path}: not a whole number of {record}-byte records")
    rows = raw.reshape(-1, record)
    y = rows[:, label_bytes - 1].astype(np.int64)
    return rows[:, label_bytes:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), y


def read_cifar(data: DataSpec, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 3, 32, 32) uint8 and labels of a CIFAR split, labels checked in range."""
    layout = cifar_layout(data.name, _resolve_root(data, None))
    files = layout.train if split == "train" else (layout.test,)
    parts = [
        read_binary_batch(layout.folder / f, layout.label_bytes)
        if layout.binary
        else read_pickle_batch(layout.folder / f, layout.label_key)
        for f in files
    ]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n = num_classes(data)
    if y.size and (y.min() < 0 or y.max() >= n):
        raise StudyError(f"{layout.folder}: labels outside 0..{n - 1} in the {split} split")
    return x, y
