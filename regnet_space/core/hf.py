"""Hugging Face RegNet configs <-> specs, in plain Python (no transformers, no torch).

Everything this package knows of Hugging Face's configs and folder layout but the weights:
`RegNetConfig`'s fields and defaults, config.json read and written, the snapshot folder's
file names. `nn.hf` holds what needs torch or transformers (the weights, transformers' own
RegNetConfig).

Hugging Face's rules: one `groups_width` for every stage, each stage with groups =
max(1, width // groups_width); no bottleneck multiplier; SE ratio 0.25 in y layers. A
config.json written by `save_pretrained` lists only the fields that differ from
`RegNetConfig`'s defaults, so a mapping with `model_type: regnet` takes those defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..infra.errors import RegNetSpaceError
from ..infra.parsing import is_int, parse_json
from ..infra.reading import read_text_file
from ..infra.text import short
from .errors import BuildError, InteropError
from .generator import Plan, make_plan
from .spec import ExplicitSpec, Spec, spec_from_dict

# A snapshot folder (save_pretrained's output): its config, and where it keeps the weights,
# in the order transformers looks.
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# The keys that tell a Hugging Face config from a spec (none of them is a spec field).
HF_KEYS = frozenset({"model_type", "hidden_sizes", "groups_width", "layer_type", "embedding_size"})

# transformers' RegNetConfig defaults (the regnet-y-040 design) and PretrainedConfig's labels.
HF_DEFAULTS: dict[str, Any] = {
    "num_channels": 3,
    "embedding_size": 32,
    "hidden_sizes": [128, 192, 512, 1088],
    "depths": [2, 6, 12, 2],
    "groups_width": 64,
    "layer_type": "y",
    "hidden_act": "relu",
    "downsample_in_first_stage": True,
    "num_labels": 2,
}
HF_FIELDS = tuple(HF_DEFAULTS)
_REQUIRED = ("hidden_sizes", "depths", "groups_width", "layer_type")
# transformers' ACT2FN names of the activations a spec has (swish is its alias of SiLU).
_HF_ACTIVATIONS = {"relu": "relu", "silu": "silu", "swish": "silu", "gelu": "gelu"}


def hf_fields(config: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """The RegNet fields of a config.json mapping (defaults filled in for model_type regnet)."""
    model_type = config.get("model_type", "regnet")
    if model_type != "regnet":
        raise InteropError(f"{source}: model_type: expected regnet, got {short(model_type)}")
    data = {k: config[k] for k in HF_FIELDS if k in config}
    if "num_labels" not in data and isinstance(config.get("id2label"), Mapping):
        data["num_labels"] = len(config["id2label"])
    if "model_type" in config:  # written by transformers: absent fields are its defaults
        data = {**HF_DEFAULTS, **data}
    return data


def spec_from_hf_fields(data: Mapping[str, Any], name: str, source: str) -> ExplicitSpec:
    """The explicit spec of Hugging Face RegNet fields (hidden_sizes, depths, groups_width...)."""
    for key in _REQUIRED:
        if key not in data:
            raise InteropError(f"{source}: {key}: required field is missing")
    sizes, depths, gw = data["hidden_sizes"], data["depths"], data["groups_width"]
    for key, values in (("hidden_sizes", sizes), ("depths", depths)):
        if not isinstance(values, (list, tuple)) or not all(is_int(v) and v > 0 for v in values):
            raise InteropError(f"{source}: {key}: expected a list of positive integers")
    if len(sizes) != len(depths) or not sizes:
        raise InteropError(f"{source}: depths: {len(depths)} entries for {len(sizes)} sizes")
    if not is_int(gw) or gw < 1:
        raise InteropError(f"{source}: groups_width: expected a positive integer, got {short(gw)}")
    stages = []
    for i, (width, depth) in enumerate(zip(sizes, depths, strict=True)):
        groups = max(1, width // gw)  # Hugging Face's rule
        if width % groups:
            raise InteropError(
                f"{source}: hidden_sizes[{i}]: {width} channels do not split into {groups} groups"
            )
        stages.append({"width": width, "depth": depth, "group_width": width // groups})
    layer_type = data["layer_type"]
    act = data.get("hidden_act", "relu")
    fields: dict[str, Any] = {
        "name": name,
        "block": layer_type,
        "stages": stages,
        "num_channels": data.get("num_channels", 3),
        "stem_width": data.get("embedding_size", 32),
        "activation": _HF_ACTIVATIONS.get(act, act) if isinstance(act, str) else act,
        "downsample_in_first_stage": data.get("downsample_in_first_stage", True),
        "num_classes": data.get("num_labels", 2),  # transformers' own default
    }
    if layer_type == "y":
        fields["se_ratio"] = 0.25
    spec = spec_from_dict(fields, source)
    if not isinstance(spec, ExplicitSpec):  # pragma: no cover - `stages` is always given
        raise InteropError(f"{source}: expected explicit stages")
    return spec


def hf_groups_width(
    widths: Sequence[int], groups: Sequence[int], preferred: Sequence[int] = ()
) -> int | None:
    """A groups_width giving each stage its number of groups under max(1, width // gw).

    Every candidate is considered (the rule is an interval per stage: gw in
    (width / (groups + 1), width / groups], or gw > width / 2 for one group); among them the
    first of `preferred` that fits, else the largest. None when no value fits every stage.
    """
    low, high = 1, None
    for w, k in zip(widths, groups, strict=True):
        if k == 1:
            low = max(low, w // 2 + 1)
        else:
            low = max(low, w // (k + 1) + 1)
            high = w // k if high is None else min(high, w // k)
    if high is not None and low > high:
        return None
    for gw in preferred:
        if gw >= low and (high is None or gw <= high):
            return gw
    return high if high is not None else max(low, *widths)


def hf_config_json(fields: Mapping[str, Any], architecture: str) -> dict[str, Any]:
    """The config.json `save_pretrained` writes for these RegNet fields (labels LABEL_i)."""
    data: dict[str, Any] = {"architectures": [architecture], "model_type": "regnet"}
    data.update({k: fields[k] for k in HF_FIELDS if k != "num_labels"})
    n = fields["num_labels"]
    data["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
    data["label2id"] = {f"LABEL_{i}": i for i in range(n)}
    return data


def _hf_refusal(plan: Plan) -> str | None:
    """The first switch Hugging Face's RegNet has no field for, with its value; None if none.

    Its x and y layers are post-activation bottlenecks with a 1x1 conv + BatchNorm shortcut,
    an activation after the add, SE with ReLU from the block input's width, no head conv, no
    stochastic depth and no dilation.
    """
    o = plan.options
    checks = [
        ("preact", o.preact, True),
        ("linear_out", o.linear_out, True),
        ("bottleneck_in", o.bottleneck_in, True),
        ("shortcut", o.shortcut, o.shortcut != "conv"),
        ("norm", o.norm, o.norm != "batch"),
        ("head_width", plan.head_width, plan.head_width > 0),
        ("final_activation", o.final_activation, o.final_activation and not plan.head_width),
        ("drop_path", o.drop_path, o.drop_path > 0),
        ("output_stride", plan.output_stride, plan.output_stride > 0),
        ("se_activation", o.se_activation, plan.se_ratio > 0 and o.se_activation != "relu"),
        ("se_from", o.se_from, plan.se_ratio > 0 and o.se_from != "input"),
    ]
    for field, value, refused in checks:
        if refused and value:
            return f"{field}: {value}"
    return None


def hf_config_kwargs(plan: Plan) -> dict[str, Any]:
    """Keyword arguments of a transformers `RegNetConfig` that builds the same network.

    Hugging Face's config has no bottleneck multiplier, one group width for all stages
    (groups = max(1, width // groups_width)), stride 2 in every stage but the first and
    SE width round(in_width / 4); a plan outside that raises BuildError naming the reason.
    """
    _check_hf_layers(plan)
    _check_hf_stages(plan)
    # Every shared groups_width that gives each stage its groups is a candidate; the
    # largest stage group width is preferred (the published configs use it).
    groups_width = hf_groups_width(
        plan.widths,
        [st.groups for st in plan.stages],
        preferred=sorted(set(plan.group_widths), reverse=True),
    )
    if groups_width is None:
        described = ", ".join(f"{st.width}/{st.groups}" for st in plan.stages)
        raise BuildError(
            f"{plan.name}: no shared groups_width gives every stage its group width "
            f"(width/groups: {described}); Hugging Face uses groups = max(1, width // groups_width)"
        )
    return {
        "num_channels": plan.num_channels,
        "embedding_size": plan.stem_width,
        "hidden_sizes": list(plan.widths),
        "depths": list(plan.depths),
        "groups_width": groups_width,
        "layer_type": plan.block,
        "hidden_act": plan.activation,
        "downsample_in_first_stage": plan.stages[0].stride == 2,
        "num_labels": plan.num_classes,
    }


def _check_hf_layers(plan: Plan) -> None:
    """Refuse a block, stem, switch or SE ratio Hugging Face's x and y layers do not have."""
    if plan.block not in ("x", "y"):
        raise BuildError(f"{plan.name}: block type {plan.block!r} has no Hugging Face layer_type")
    if plan.stem != "imagenet":
        kind = " (stride-1 stem)" if plan.stem == "cifar" else ""
        raise BuildError(
            f"{plan.name}: stem: {plan.stem}{kind}; Hugging Face RegNet has only the "
            "stride-2 ImageNet stem"
        )
    why = _hf_refusal(plan)
    if why is not None:
        raise BuildError(f"{plan.name}: {why}; Hugging Face's RegNet cannot express it")
    if plan.block == "y" and plan.se_ratio != 0.25:
        raise BuildError(
            f"{plan.name}: Hugging Face y layers use se_ratio 0.25, the plan has {plan.se_ratio}"
        )
    if plan.block == "x" and plan.se_ratio != 0:
        raise BuildError(
            f"{plan.name}: Hugging Face x layers have no SE (se_ratio {plan.se_ratio})"
        )


def _check_hf_stages(plan: Plan) -> None:
    """Refuse a bottleneck multiplier or a stride Hugging Face's stages do not have."""
    for st in plan.stages:
        if st.bottleneck_multiplier != 1 or st.bottleneck_width != st.width:
            raise BuildError(
                f"{plan.name}: stage {st.index} has bottleneck multiplier "
                f"{st.bottleneck_multiplier}; Hugging Face RegNet supports only 1"
            )
        if st.index > 0 and st.stride != 2:
            raise BuildError(
                f"{plan.name}: stage {st.index} has stride {st.stride}; Hugging Face RegNet "
                "uses stride 2 in every stage but the first"
            )


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


def hf_config_from_spec(spec: Spec) -> HfRegNetConfig:
    """The Hugging Face config that builds the same network (BuildError if it cannot)."""
    kw = hf_config_kwargs(make_plan(spec))
    return HfRegNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})


def is_hf_config(data: Any) -> bool:
    """Whether parsed data or an object is a Hugging Face config (a mapping with one of its
    keys, or a `RegNetConfig`-like object)."""
    if isinstance(data, Mapping):
        return bool(HF_KEYS & set(data))
    return hasattr(data, "model_type") and hasattr(data, "hidden_sizes")


def spec_from_hf_config(
    config: Mapping[str, Any] | Any, name: str = "hf-regnet", source: str = "<config>"
) -> ExplicitSpec:
    """The explicit spec of a Hugging Face RegNet config (mapping or `RegNetConfig`)."""
    if not isinstance(config, Mapping):
        names = [f.name for f in dataclasses.fields(HfRegNetConfig)]
        config = {k: getattr(config, k) for k in (*names, "model_type") if hasattr(config, k)}
    return spec_from_hf_fields(hf_fields(config, source), name, source)


def read_hf_config(path: Path, *, error: type[RegNetSpaceError]) -> dict[str, Any]:
    """A config.json file's object, read with the safe JSON reader's limits."""
    data = parse_json(read_text_file(path, CONFIG_FILE, error=error), str(path), error=error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def hf_config_name(path: Path) -> str:
    """The name a config file's spec gets: its snapshot folder's for config.json, else its own."""
    name = path.parent.name if path.name == CONFIG_FILE and path.parent.name else path.stem
    return name or "hf-regnet"
