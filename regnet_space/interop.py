"""Config round trips: spec <-> Hugging Face `RegNetConfig` and timm `RegNetCfg` kwargs.

Each peer format is a frozen dataclass (`HfRegNetConfig`, `TimmRegNetCfg`); `as_kwargs()`
gives the keyword arguments of the peer's own class. What a peer cannot express (another
rounding rule, q != 8, five stages for timm) is refused with one line naming the field. No
peer library is imported unless a function says so. pycls YAML lives in pycls_config.py;
`load_any_spec` reads all three file kinds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import RegNetSpaceError
from .generator import plan as make_plan
from .loading import read_text_file
from .spec import ExplicitSpec, ParametricSpec, Spec, spec_from_dict, spec_from_text

__all__ = [
    "HfRegNetConfig",
    "InteropError",
    "TimmRegNetCfg",
    "hf_config_from_spec",
    "load_any_spec",
    "load_hf_config",
    "spec_from_hf_config",
    "spec_from_timm_cfg",
    "timm_cfg_from_spec",
    "validated_spec",
]


class InteropError(RegNetSpaceError, ValueError):
    """A peer config that does not describe a RegNet this package builds, or the reverse."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Hugging Face


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
    from .model import hf_config_kwargs  # imports torch

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


def validated_spec(fields: dict[str, Any], source: str) -> Spec:
    """Validate spec fields built from a peer config; errors become one-line InteropErrors."""
    try:
        return spec_from_dict(fields, source)
    except RegNetSpaceError as exc:
        raise InteropError(str(exc)) from None


def load_hf_config(path: str | Path, name: str | None = None) -> ExplicitSpec:
    """The spec of a Hugging Face `config.json` (or a snapshot folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    text = read_text_file(p, what="config.json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InteropError(f"{p}: invalid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InteropError(f"{p}: expected a JSON object")
    default = p.parent.name if p.name == "config.json" and p.parent.name else p.stem
    return spec_from_hf_config(data, name or default or "hf-regnet", str(p))


# ---------------------------------------------------------------------------------------------
# timm


@dataclass(frozen=True)
class TimmRegNetCfg:
    """The fields of timm's `RegNetCfg`, plus the model's `in_chans` and `num_classes`."""

    depth: int
    w0: int
    wa: float
    wm: float
    group_size: int
    bottle_ratio: float = 1.0
    se_ratio: float = 0.0
    group_min_ratio: float = 0.0
    stem_width: int = 32
    downsample: str | None = "conv1x1"
    linear_out: bool = False
    preact: bool = False
    num_features: int = 0
    act_layer: str = "relu"
    norm_layer: str = "batchnorm"
    in_chans: int = 3
    num_classes: int = 1000

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `timm.models.regnet.RegNetCfg` (no in_chans / num_classes)."""
        data = dataclasses.asdict(self)
        del data["in_chans"], data["num_classes"]
        return data


# timm's `group_min_ratio`: 0 is pycls's rounding, 0.9 torchvision's make-divisible.
_TIMM_ROUNDING = {"pycls": 0.0, "torchvision": 0.9}


def timm_cfg_from_spec(spec: Spec) -> TimmRegNetCfg:
    """timm's config for a parametric spec with 4 stages, q = 8 and stride 2 everywhere."""
    if not isinstance(spec, ParametricSpec):
        raise InteropError(f"{spec.name}: timm's RegNetCfg has no explicit-stage form")
    if spec.q != 8:
        raise InteropError(f"{spec.name}: q: timm quantizes widths to 8, the spec has {spec.q}")
    if not spec.downsample_in_first_stage:
        raise InteropError(f"{spec.name}: downsample_in_first_stage: timm always uses stride 2")
    if spec.bottleneck_multiplier > 1:
        raise InteropError(
            f"{spec.name}: bottleneck_multiplier: timm rounds bm > 1 differently from pycls"
        )
    n = make_plan(spec).num_stages
    if n != 4:
        raise InteropError(f"{spec.name}: the design has {n} stages; timm builds exactly 4")
    return TimmRegNetCfg(
        depth=spec.depth,
        w0=spec.w0,
        wa=spec.wa,
        wm=spec.wm,
        group_size=spec.group_width,
        bottle_ratio=spec.bottleneck_multiplier,
        se_ratio=spec.se_ratio,
        group_min_ratio=_TIMM_ROUNDING[spec.rounding],
        stem_width=spec.stem_width,
        act_layer=spec.activation,
        in_chans=spec.num_channels,
        num_classes=spec.num_classes,
    )


def _timm_fields(cfg: TimmRegNetCfg | Mapping[str, Any] | Any) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(TimmRegNetCfg)]
    if isinstance(cfg, Mapping):
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            raise InteropError(f"timm RegNetCfg: unknown field {unknown[0]!r}")
        return dict(cfg)
    return {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}


def spec_from_timm_cfg(
    cfg: TimmRegNetCfg | Mapping[str, Any] | Any,
    name: str = "timm-regnet",
    *,
    num_classes: int | None = None,
    num_channels: int | None = None,
) -> ParametricSpec:
    """The parametric spec of a timm `RegNetCfg` (object, its kwargs, or TimmRegNetCfg)."""
    data = _timm_fields(cfg)
    default = TimmRegNetCfg(depth=1, w0=8, wa=0.0, wm=2.0, group_size=8)
    merged = {**dataclasses.asdict(default), **data}
    for key in ("downsample", "linear_out", "preact", "num_features", "norm_layer"):
        if merged[key] != getattr(default, key):
            raise InteropError(
                f"timm RegNetCfg: {key}={merged[key]!r} is not a RegNet X/Y design "
                f"(only {getattr(default, key)!r} converts)"
            )
    act = merged["act_layer"]
    if not isinstance(act, str):
        raise InteropError(f"timm RegNetCfg: act_layer: give a name, got {type(act).__name__}")
    rounding = {v: k for k, v in _TIMM_ROUNDING.items()}.get(merged["group_min_ratio"])
    if rounding is None:
        raise InteropError(
            f"timm RegNetCfg: group_min_ratio={merged['group_min_ratio']!r}; only 0 (pycls) "
            "and 0.9 (torchvision) convert"
        )
    se = merged["se_ratio"]
    fields: dict[str, Any] = {
        "name": name,
        "block": "y" if se else "x",
        "se_ratio": float(se),
        "depth": merged["depth"],
        "w0": merged["w0"],
        "wa": float(merged["wa"]) if _is_number(merged["wa"]) else merged["wa"],
        "wm": float(merged["wm"]) if _is_number(merged["wm"]) else merged["wm"],
        "group_width": merged["group_size"],
        "bottleneck_multiplier": float(merged["bottle_ratio"]),
        "stem_width": merged["stem_width"],
        "activation": act,
        "rounding": rounding,
        "num_classes": merged["num_classes"] if num_classes is None else num_classes,
        "num_channels": merged["in_chans"] if num_channels is None else num_channels,
    }
    spec = validated_spec(fields, "timm RegNetCfg")
    if not isinstance(spec, ParametricSpec):  # pragma: no cover - no `stages` field is given
        raise InteropError("timm RegNetCfg: expected a parametric design")
    return spec


# ---------------------------------------------------------------------------------------------
# Any of the three


def load_any_spec(path: str | Path) -> Spec:
    """A spec file, a pycls config (YAML with a MODEL section) or a Hugging Face config.json."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        return load_hf_config(p)
    text = read_text_file(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None  # spec_from_text reports the YAML error
    if isinstance(data, Mapping) and "MODEL" in data:
        from .pycls_config import spec_from_pycls_yaml

        return spec_from_pycls_yaml(text, str(p))
    return spec_from_text(text, str(p))
