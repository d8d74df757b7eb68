"""Hugging Face `RegNetConfig` <-> spec: explicit stages with one shared group width."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.generator import plan as make_plan
from ..core.loading import parse_json, read_text_file
from ..core.spec import ExplicitSpec, Spec
from .common import InteropError, _is_int, validated_spec


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
    from ..nn.model import hf_config_kwargs  # imports torch

    kw = hf_config_kwargs(make_plan(spec))
    return HfRegNetConfig(
        hidden_sizes=tuple(kw["hidden_sizes"]),
        depths=tuple(kw["depths"]),
        groups_width=kw["groups_width"],
        layer_type=kw["layer_type"],
        num_channels=kw["num_channels"],
        embedding_size=kw["embedding_size"],
        hidden_act=kw["hidden_act"],
        downsample_in_first_stage=kw["downsample_in_first_stage"],
        num_labels=kw["num_labels"],
    )


def _hf_fields(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The RegNet fields of a config.json mapping or a `RegNetConfig`-like object."""
    names = [f.name for f in dataclasses.fields(HfRegNetConfig)]
    if isinstance(config, Mapping):
        data = {k: config[k] for k in names if k in config}
        if "num_labels" not in data and isinstance(config.get("id2label"), Mapping):
            data["num_labels"] = len(config["id2label"])
        model_type = config.get("model_type", "regnet")
    else:
        data = {k: getattr(config, k) for k in names if hasattr(config, k)}
        model_type = getattr(config, "model_type", "regnet")
    if model_type != "regnet":
        raise InteropError(f"model_type: expected regnet, got {model_type!r}")
    return data


def spec_from_hf_config(
    config: Mapping[str, Any] | Any, name: str = "hf-regnet", source: str = "<config>"
) -> ExplicitSpec:
    """The explicit spec of a Hugging Face RegNet config (mapping or `RegNetConfig`)."""
    data = _hf_fields(config)
    for key in ("hidden_sizes", "depths", "groups_width", "layer_type"):
        if key not in data:
            raise InteropError(f"{source}: {key}: required field is missing")
    sizes, depths, gw = data["hidden_sizes"], data["depths"], data["groups_width"]
    for key, values in (("hidden_sizes", sizes), ("depths", depths)):
        if not isinstance(values, (list, tuple)) or not all(_is_int(v) and v > 0 for v in values):
            raise InteropError(f"{source}: {key}: expected a list of positive integers")
    if len(sizes) != len(depths) or not sizes:
        raise InteropError(f"{source}: depths: {len(depths)} entries for {len(sizes)} sizes")
    if not _is_int(gw) or gw < 1:
        raise InteropError(f"{source}: groups_width: expected a positive integer, got {gw!r}")
    stages = []
    for i, (width, depth) in enumerate(zip(sizes, depths, strict=True)):
        groups = max(1, width // gw)  # Hugging Face's rule
        if width % groups:
            raise InteropError(
                f"{source}: hidden_sizes[{i}]: {width} channels do not split into {groups} groups"
            )
        stages.append({"width": width, "depth": depth, "group_width": width // groups})
    layer_type = data["layer_type"]
    fields: dict[str, Any] = {
        "name": name,
        "block": layer_type,
        "stages": stages,
        "num_channels": data.get("num_channels", 3),
        "stem_width": data.get("embedding_size", 32),
        "activation": data.get("hidden_act", "relu"),
        "downsample_in_first_stage": data.get("downsample_in_first_stage", True),
        "num_classes": data.get("num_labels", 2),  # transformers' own default
    }
    if layer_type == "y":
        fields["se_ratio"] = 0.25
    return _explicit(fields, source)


def _explicit(fields: dict[str, Any], source: str) -> ExplicitSpec:
    spec = validated_spec(fields, source)
    if not isinstance(spec, ExplicitSpec):  # pragma: no cover - `stages` is always given
        raise InteropError(f"{source}: expected explicit stages")
    return spec


def load_hf_config(path: str | Path, name: str | None = None) -> ExplicitSpec:
    """The spec of a Hugging Face `config.json` (or a snapshot folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    text = read_text_file(p, what="config.json")
    data = parse_json(text, str(p), InteropError)
    if not isinstance(data, dict):
        raise InteropError(f"{p}: expected a JSON object")
    default = p.parent.name if p.name == "config.json" and p.parent.name else p.stem
    return spec_from_hf_config(data, name or default or "hf-regnet", str(p))
