"""Bounds and option names shared by the library and the command line (no numpy, no pydantic).

The command line registers its options from these without importing the models that use
them, which keeps `regnet-space --help` fast.
"""

from __future__ import annotations

from typing import Literal

DEFAULT_INPUT_SIZE = 224
MAX_INPUT_SIZE = 1 << 16

# 4 GB of float32 weights: larger designs are refused unless the caller allows them.
MAX_BUILD_PARAMS = 1_000_000_000

Convention = Literal["paper", "fvcore", "torchvision"]
CONVENTIONS: tuple[Convention, ...] = ("paper", "fvcore", "torchvision")

Format = Literal["table", "csv", "json", "markdown"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json", "markdown")
