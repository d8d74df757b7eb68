"""Weight files read safely: torch.load with weights_only=True, or safetensors.

Shared by `nn.hf` (from_pretrained) and `interop.checkpoints` (convert, export --weights);
every problem is one line of the caller's error type naming the file: a FIFO or device is
named before it is opened for reading, garbage that makes the unpickler fail in any way is
"not a PyTorch checkpoint", and every tensor is checked as it would load (`check_weight`).
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..infra.errors import RegNetSpaceError
from ..infra.reading import open_regular
from ..infra.text import clean, short

SAFETENSORS_SUFFIX = ".safetensors"


def read_weight_file(p: Path, error: type[RegNetSpaceError]) -> Any:
    """What a .safetensors file or a torch checkpoint holds (torch.load with weights_only)."""
    if p.suffix == SAFETENSORS_SUFFIX:
        return read_safetensors(p, error)
    with open_regular(p, "checkpoint", error=error) as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise here
                return torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            if "Unsupported global" in text or "unsupported GLOBAL" in text:
                found = re.search(r"GLOBAL ([\w.]+)", text)
                what = f" ({clean(found.group(1))})" if found else ""
                raise error(
                    f"{p}: holds a Python object{what} other than tensors; refused "
                    "(checkpoints are read with weights_only=True)"
                ) from None
            raise error(f"{p}: not a PyTorch checkpoint ({_unpickler_reason(exc)})") from None
        except Exception as exc:
            # On damaged bytes torch's reader and weights-only unpickler fail in any way
            # (IndexError, struct.error, AssertionError, TypeError, RuntimeError...); all
            # that runs here is reading the file, so each means the same thing.
            raise error(f"{p}: not a PyTorch checkpoint ({_first_line(exc)})") from None


def read_safetensors(p: Path, error: type[RegNetSpaceError]) -> dict[str, Tensor]:
    """The tensors of a .safetensors file, on the CPU."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise error(f"{p}: reading .safetensors needs the safetensors package") from None
    with open_regular(p, "safetensors", error=error):
        pass  # a FIFO or device is refused here: safetensors would open it blocking
    try:
        return load_file(str(p), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise error(f"{p}: not a safetensors file ({_first_line(exc)})") from None


def save_torch(obj: Any, path: str) -> None:
    """torch.save into a file opened here, so a failed write keeps its OSError (ENOSPC...);
    torch's own file writer reports it as '[enforce fail at inline_container.cc]'."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)


def state_dict_in(obj: Any, origin: str, error: type[RegNetSpaceError]) -> dict[str, Tensor]:
    """A loaded object as a state dict: a mapping of names to tensors, nothing else."""
    if not isinstance(obj, Mapping):
        raise error(f"{origin}: expected a state dict, got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise error(f"{origin}: key {short(key)} is not a name")
        if not isinstance(value, Tensor):
            raise error(f"{origin}: {clean(key)}: not a tensor ({type(value).__name__})")
    return dict(obj)


def check_weight(
    value: Any, key: str, origin: str, error: type[RegNetSpaceError], count: bool = False
) -> None:
    """Refuse what would load silently wrong: non-tensors, meta and sparse tensors, weights
    that are not floating point (`count`: an integer, as num_batches_tracked), NaN or inf."""
    key = clean(key)
    if not isinstance(value, Tensor):
        raise error(f"{origin}: {key}: not a tensor ({type(value).__name__})")
    if value.is_meta:
        raise error(f"{origin}: {key}: a meta tensor (shape only, no values)")
    if value.layout != torch.strided:
        raise error(f"{origin}: {key}: a {value.layout} tensor; expected a dense one")
    if count:
        if value.dtype not in (torch.int64, torch.int32):
            raise error(f"{origin}: {key}: dtype {value.dtype}, expected an integer count")
        return
    if not value.dtype.is_floating_point:
        raise error(
            f"{origin}: {key}: dtype {str(value.dtype).removeprefix('torch.')}; weights must be "
            "floating point (an integer or bool checkpoint would load as wrong values)"
        )
    if not bool(torch.isfinite(value).all()):
        raise error(f"{origin}: {key}: holds NaN or infinite values")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    what = text.splitlines()[0] if text else type(exc).__name__
    return clean(what)[:120]


def _unpickler_reason(exc: Exception) -> str:
    """The weights-only unpickler's own reason, without its long advice."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().splitlines()
        if reason:
            return clean(reason[0].strip())[:120]
    return "unreadable pickle"
