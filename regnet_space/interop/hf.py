"""Hugging Face `RegNetConfig` <-> spec: explicit stages with one shared group width."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import SpecError
from ..core.generator import plan as make_plan
from ..core.hf_config import hf_config_kwargs, hf_fields, read_config_json, spec_from_hf_fields
from ..core.spec import ExplicitSpec, Spec
from .common import InteropError


@dataclass(frozen=True)
class HfRegNetConfig:
    """The fields of a transformers `RegNetConfig` (explicit stages, one shared group width)."""

    hidden_sizes: tuple[int, ...]
    depths: tuple[int, ...]
    groups_width: int
    layer_type: str
    num_channels: int = 3
    embedding_size: int = 32
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = True
    num_labels: int = 1000

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `transformers.RegNetConfig` (lists, not tuples)."""
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_transformers(self) -> Any:
        """A `transformers.RegNetConfig` (imports transformers)."""
        from transformers import RegNetConfig

        return RegNetConfig(**self.as_kwargs())


def hf_config_from_spec(spec: Spec) -> HfRegNetConfig:
    """The Hugging Face config that builds the same network (BuildError if it cannot)."""
    kw = hf_config_kwargs(make_plan(spec))
    return HfRegNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})


def _hf_fields(config: Mapping[str, Any] | Any, source: str = "<config>") -> dict[str, Any]:
    """The RegNet fields of a config.json mapping or a `RegNetConfig`-like object."""
    if not isinstance(config, Mapping):
        names = [f.name for f in dataclasses.fields(HfRegNetConfig)]
        config = {k: getattr(config, k) for k in (*names, "model_type") if hasattr(config, k)}
    try:
        return hf_fields(config, source)
    except SpecError as exc:
        raise InteropError(str(exc)) from None


def spec_from_hf_config(
    config: Mapping[str, Any] | Any, name: str = "hf-regnet", source: str = "<config>"
) -> ExplicitSpec:
    """The explicit spec of a Hugging Face RegNet config (mapping or `RegNetConfig`)."""
    try:
        return spec_from_hf_fields(_hf_fields(config, source), name, source)
    except SpecError as exc:
        raise InteropError(str(exc)) from None


def load_hf_config(path: str | Path, name: str | None = None) -> ExplicitSpec:
    """The spec of a Hugging Face `config.json` (or a snapshot folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = read_config_json(p, InteropError)
    return spec_from_hf_config(data, name or hf_config_name(p), str(p))


def hf_config_name(path: Path) -> str:
    """The name a config file's spec gets: its snapshot folder's for config.json, else its own."""
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return name or "hf-regnet"
