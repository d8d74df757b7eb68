"""Weight files read safely: torch.load with weights_only=True, or safetensors.

Shared by `nn.model` (from_pretrained) and `interop.checkpoints` (convert); every problem is
one line of the caller's error type naming the file.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.errors import RegNetSpaceError
from ..core.text import clean

SAFETENSORS_SUFFIX = ".safetensors"


def read_weight_file(p: Path, error: type[RegNetSpaceError]) -> Any:
    """What a .safetensors file or a torch checkpoint holds (torch.load with weights_only)."""
    if p.suffix == SAFETENSORS_SUFFIX:
        return read_safetensors(p, error)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise here
            return torch.load(p, map_location="cpu", weights_only=True)
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
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise error(f"{p}: not a PyTorch checkpoint ({_first_line(exc)})") from None


def read_safetensors(p: Path, error: type[RegNetSpaceError]) -> dict[str, Tensor]:
    """The tensors of a .safetensors file, on the CPU."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise error(f"{p}: reading .safetensors needs the safetensors package") from None
    try:
        return load_file(str(p), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise error(f"{p}: not a safetensors file ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return what[:120]


def _unpickler_reason(exc: Exception) -> str:
    """The weights-only unpickler's own reason, without its long advice."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].strip().splitlines()
        if reason:
            return reason[0].strip()[:120]
    return "unreadable pickle"
