"""Hugging Face with torch and transformers: what `core.hf` cannot import.

transformers' own `RegNetConfig` of a config; `RegNetModel.from_pretrained` / `save_pretrained`
(in `nn.model`) read and write the weights of a snapshot folder.
"""

from __future__ import annotations

from typing import Any

from ..core.hf import HfRegNetConfig


def transformers_config(config: HfRegNetConfig) -> Any:
    """A `transformers.RegNetConfig` of these fields (imports transformers)."""
    from transformers import RegNetConfig

    return RegNetConfig(**config.as_kwargs())
