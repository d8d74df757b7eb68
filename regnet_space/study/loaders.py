"""Batches on the training device: small data sets as device tensors, image folders by workers.

Digits, CIFAR and synthetic data live on the device as uint8 tensors; a training epoch draws
its order, crops and flips for all images at once from a generator seeded by (seed, epoch), and
every batch is cut with tensor indexing (no per-image Python work), so small models are never
data-bound and an epoch is the same on every device and after a resume. Image folders are
decoded by Pillow in DataLoader workers, each image's augmentation seeded the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .data import IMAGE_SUFFIXES, DataSpec, image_classes, read_cifar
from .errors import StudyError
from .recipe import Recipe

# Per-channel mean and std on the 0..1 scale (the usual constants of each data set).
CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_NORM = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DIGITS_TEST = 360  # of 1,797 images: a fixed 20 % test split
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 2560, 512


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for one (recipe seed, epoch, stream): epochs are independent of resumes."""
    mixed = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return (int(mixed[0]) << 31) ^ int(mixed[1])


class Loader(Protocol):
    """What the trainer needs of a data set."""

    n_train: int
    n_test: int

    def steps_per_epoch(self) -> int: ...

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]: ...

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]: ...


def _normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Any:
    m = torch.tensor([255.0 * v for v in mean], device=device).view(1, -1, 1, 1)
    inv = torch.tensor([1.0 / (255.0 * v) for v in std], device=device).view(1, -1, 1, 1)

    def normalize(x: Tensor, channels: int) -> Tensor:
        x = (x.float() - m) * inv
        if x.shape[1] != channels:  # grey images fed to an RGB stem: the same plane thrice
            x = x.expand(-1, channels, -1, -1)
        return x

    return normalize


def _steps(n: int, batch_size: int) -> int:
    # The last partial batch is dropped (pycls), unless the set is smaller than one batch.
    return max(1, n // batch_size)


def _resize(x: Tensor, size: int) -> Tensor:
    """uint8 (N, C, H, W) images resized to size x size (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(
            chunk.float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=size < chunk.shape[-1],
        )
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


@dataclass
class TensorLoader:
    """A small data set held on the device as uint8 tensors, augmented in batch."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    normalize: Any
    channels: int
    batch_size: int
    seed: int
    pad: int  # random translation of up to `pad` pixels (zero padding, then crop)
    flip: bool

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def n_test(self) -> int:
        return len(self.test_y)

    def steps_per_epoch(self) -> int:
        return _steps(self.n_train, self.batch_size)

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        device = self.train_x.device
        n, bs = self.n_train, min(self.batch_size, self.n_train)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        # All of the epoch's randomness drawn at once on the CPU: the same on every device.
        order = torch.randperm(n, generator=g).to(device)
        shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(device)
        flips = (torch.rand(n, generator=g) < 0.5).to(device)
        side = self.train_x.shape[-1]
        base = torch.arange(side, device=device)
        for step in range(self.steps_per_epoch()):
            idx = order[step * bs : (step + 1) * bs]
            x = self.train_x[idx]
            if self.pad:
                padded = F.pad(x, (self.pad,) * 4)
                rows = (shifts[step * bs : (step + 1) * bs, 0, None] + base)[:, None, :, None]
                cols = (shifts[step * bs : (step + 1) * bs, 1, None] + base)[:, None, None, :]
                b = torch.arange(len(idx), device=device)[:, None, None, None]
                c = torch.arange(x.shape[1], device=device)[None, :, None, None]
                x = padded[b, c, rows, cols]
            if self.flip:
                f = flips[step * bs : (step + 1) * bs, None, None, None]
                x = torch.where(f, x.flip(3), x)
            yield self.normalize(x, self.channels), self.train_y[idx]

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.n_test, self.batch_size):
            x = self.test_x[start : start + self.batch_size]
            yield self.normalize(x, self.channels), self.test_y[start : start + self.batch_size]


@dataclass
class SyntheticLoader:
    """Random images and labels drawn on the device, batch by batch (speed runs only)."""

    size: int
    test_size: int
    channels: int
    batch_size: int
    seed: int
    device: torch.device
    n_train: int = SYNTHETIC_TRAIN
    n_test: int = SYNTHETIC_TEST

    def steps_per_epoch(self) -> int:
        return _steps(self.n_train, self.batch_size)

    def _batches(self, seed: int, n: int, size: int, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator(device=self.device).manual_seed(seed)
        for step in range(steps):
            b = min(self.batch_size, n - step * self.batch_size)
            shape = (b, self.channels, size, size)
            x = torch.randn(shape, generator=g, device=self.device)
            y = torch.randint(0, 10, (b,), generator=g, device=self.device)
            yield x, y

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        seed = epoch_seed(self.seed, epoch)
        return self._batches(seed, self.n_train, self.size, self.steps_per_epoch())

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        steps = math.ceil(self.n_test / self.batch_size)
        return self._batches(epoch_seed(0, 0, 1), self.n_test, self.test_size, steps)


# ---------------------------------------------------------------------------------------------
# Small data sets


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits as scikit-learn's load_digits gives them: images (1797, 8, 8), targets.

    Read from the CSV scikit-learn bundles, without importing scikit-learn (whose import
    costs a new worker seconds); load_digits where the file is not where it ships.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                data = np.loadtxt(fh, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


@lru_cache(maxsize=4)
def _digits(train_size: int, test_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 1,797 8x8 digits as uint8 (N, 1, S, S), a fixed seeded 80/20 split."""
    pixels, targets = digits_arrays()
    images = torch.from_numpy(pixels.astype(np.float32) * (255.0 / 16.0))[:, None]
    images = images.round().to(torch.uint8)
    labels = torch.from_numpy(targets.astype(np.int64))
    # A fixed split (seed 0), the same for every recipe seed, so trials share one test set.
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(labels)))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    return (
        _resize(images[train], train_size),
        labels[train],
        _resize(images[test], test_size),
        labels[test],
    )


def _tensor_loader(
    data: DataSpec, recipe: Recipe, channels: int, device: torch.device
) -> TensorLoader:
    if data.name == "digits":
        tx, ty, vx, vy = _digits(recipe.train_size, recipe.test_size)
        mean, std = (tx.float().mean().item() / 255,), (tx.float().std().item() / 255,)
        flip = False  # a mirrored digit is another glyph
    else:
        x, y = read_cifar(data, "train")
        tx, ty = _resize(torch.from_numpy(x), recipe.train_size), torch.from_numpy(y)
        x, y = read_cifar(data, "test")
        vx, vy = _resize(torch.from_numpy(x), recipe.test_size), torch.from_numpy(y)
        mean, std = CIFAR10_NORM if data.name == "cifar10" else CIFAR100_NORM
        flip = True
    if tx.shape[1] not in (1, channels):
        raise StudyError(
            f"data: {data.name} has {tx.shape[1]} channels, the spec's num_channels is {channels}"
        )
    augment = recipe.augment
    return TensorLoader(
        train_x=tx.to(device),
        train_y=ty.to(device),
        test_x=vx.to(device),
        test_y=vy.to(device),
        normalize=_normalizer(mean * tx.shape[1] if len(mean) == 1 else mean, std, device),
        channels=channels,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        # pycls's CIFAR augmentation: 4-pixel pad and random 32x32 crop (an eighth of the side).
        pad=recipe.train_size // 8 if augment else 0,
        flip=flip and augment,
    )


# ---------------------------------------------------------------------------------------------
# Image folders


def _image_files(folder: Path) -> list[str]:
    return sorted(
        e.path
        for e in os.scandir(folder)
        if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
    )


class ImageFolderSet(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """(path, label) pairs decoded with Pillow; a key is (index, augmentation seed or -1)."""

    def __init__(
        self, root: Path, classes: Sequence[str], split: str, size: int, resize: int
    ) -> None:
        index = {name: i for i, name in enumerate(classes)}
        folder = root / split
        self.samples = [
            (path, index[name])
            for name in sorted(e.name for e in os.scandir(folder) if e.is_dir())
            if name in index
            for path in _image_files(folder / name)
        ]
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        i, seed = key
        path, label = self.samples[i]
        try:
            img = _decode(path)
        except Exception:  # unreadable: the batch names it (label -1 - index), see check()
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), -1 - i
        # Seed -1: no augmentation (test images, or a recipe with augment: false).
        img = self._resize_center_crop(img) if seed < 0 else self._random_resized_crop(img, seed)
        arr = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()), label

    def check(self, y: Tensor) -> None:
        """Refuse a batch holding an image that did not decode, naming the file and why."""
        bad = y[y < 0]
        if len(bad):
            path = self.samples[-1 - int(bad[0])][0]
            try:
                _decode(path)
                why = "it did not decode in a loader worker"
            except Exception as exc:  # Pillow: UnidentifiedImageError, DecompressionBombError...
                why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise StudyError(f"{path}: not a readable image ({why})")

    def _random_resized_crop(self, img: Any, seed: int) -> Any:
        """torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) and a random flip."""
        from PIL import Image

        g = torch.Generator().manual_seed(seed)
        w, h = img.size
        area = w * h
        box = None
        for _ in range(10):
            u = torch.rand(4, generator=g).tolist()
            target = area * (0.08 + 0.92 * u[0])
            ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
            cw = round(math.sqrt(target * ratio))
            ch = round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(u[2] * (h - ch + 1))
                left = int(u[3] * (w - cw + 1))
                box = (left, top, left + cw, top + ch)
                break
        if box is None:  # fall back to the central crop of the clamped aspect ratio
            ratio = w / h
            if ratio < 3 / 4:
                cw, ch = w, round(w / (3 / 4))
            elif ratio > 4 / 3:
                ch, cw = h, round(h * (4 / 3))
            else:
                cw, ch = w, h
            left, top = (w - cw) // 2, (h - ch) // 2
            box = (left, top, left + cw, top + ch)
        img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1, generator=g).item() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def _resize_center_crop(self, img: Any) -> Any:
        from PIL import Image

        w, h = img.size
        scale = self.resize / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))


def _decode(path: str) -> Any:
    """An image file as an RGB Pillow image, fully decoded (a truncated file raises here)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


class _KeySampler(torch.utils.data.Sampler):  # type: ignore[type-arg]
    """Yields (index, seed) keys: a seeded order, and per-image augmentation seeds."""

    def __init__(self, keys: list[tuple[int, int]]) -> None:
        self.keys = keys

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class FolderLoader:
    """ImageNet-style train/ and val/ class folders, decoded in DataLoader workers."""

    train_set: ImageFolderSet
    test_set: ImageFolderSet
    normalize: Any
    channels: int
    batch_size: int
    seed: int
    device: torch.device
    workers: int
    augment: bool

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.test_set)

    def steps_per_epoch(self) -> int:
        return _steps(self.n_train, self.batch_size)

    def _loader(self, data: ImageFolderSet, keys: list[tuple[int, int]], drop: bool) -> Any:
        return torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=_KeySampler(keys),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop,
        )

    def _to_device(self, data: ImageFolderSet, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        data.check(y)
        x = x.to(self.device, non_blocking=True)
        return self.normalize(x, self.channels), y.to(self.device, non_blocking=True)

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.n_train, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (self.n_train,), generator=g).tolist()
        if not self.augment:
            seeds = [-1] * self.n_train
        keys = list(zip(order, seeds, strict=True))
        drop = self.n_train >= self.batch_size
        for x, y in self._loader(self.train_set, keys, drop):
            yield self._to_device(self.train_set, x, y)

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        keys = [(i, -1) for i in range(self.n_test)]
        for x, y in self._loader(self.test_set, keys, False):
            yield self._to_device(self.test_set, x, y)


def _workers() -> int:
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


def make_loader(
    data: DataSpec, recipe: Recipe, channels: int, device: torch.device
) -> TensorLoader | SyntheticLoader | FolderLoader:
    """The loader of a checked data spec, its tensors already on `device`."""
    if data.name == "synthetic":
        return SyntheticLoader(
            size=recipe.train_size,
            test_size=recipe.test_size,
            channels=channels,
            batch_size=recipe.batch_size,
            seed=recipe.seed,
            device=device,
        )
    if data.name == "imagefolder":
        if channels != 3:
            raise StudyError(
                f"data: imagefolder gives RGB images, the spec has {channels} channels"
            )
        root = Path(str(data.root))
        classes = image_classes(root)
        # pycls: test images resized to 256 then center-cropped to 224 (a crop ratio of 0.875).
        resize = recipe.test_resize or round(recipe.test_size / 0.875)
        train_resize = round(recipe.train_size / 0.875)
        return FolderLoader(
            train_set=ImageFolderSet(root, classes, "train", recipe.train_size, train_resize),
            test_set=ImageFolderSet(root, classes, "val", recipe.test_size, resize),
            normalize=_normalizer(*IMAGENET_NORM, device),
            channels=channels,
            batch_size=recipe.batch_size,
            seed=recipe.seed,
            device=device,
            workers=_workers(),
            augment=recipe.augment,
        )
    return _tensor_loader(data, recipe, channels, device)
