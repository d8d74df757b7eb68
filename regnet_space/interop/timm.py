"""timm `RegNetCfg` <-> spec: the parametric design with timm's names and rounding switch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.generator import Plan
from ..core.generator import plan as make_plan
from ..core.loading import is_number
from ..core.spec import ParametricSpec, Spec
from .common import InteropError, validated_spec


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


# timm's `group_min_ratio`: 0 is pycls's group-width rounding, 0.9 torchvision's
# make-divisible; timm's width rule runs in torch float32 either way, so a config imports as
# rounding timm or torchvision (both float32), never pycls (float64).
_TIMM_ROUNDING = {"timm": 0.0, "torchvision": 0.9}


def _timm_rounding(spec: ParametricSpec, planned: Plan) -> float:
    """timm's group_min_ratio for the spec (planned: its plan); pycls only if float32 agrees."""
    if spec.rounding != "pycls":
        return _TIMM_ROUNDING[spec.rounding]
    as_timm = make_plan(spec.model_copy(update={"rounding": "timm"}))
    if as_timm.stages != planned.stages:
        raise InteropError(
            f"{spec.name}: rounding: timm's float32 width rule gives widths "
            f"{list(as_timm.widths)}, pycls's float64 rule {list(planned.widths)} (a .5 tie); "
            "use rounding: timm to convert"
        )
    return _TIMM_ROUNDING["timm"]


def timm_cfg_from_spec(spec: Spec) -> TimmRegNetCfg:
    """timm's config for a parametric spec with 4 stages, q = 8 and stride 2 everywhere."""
    if not isinstance(spec, ParametricSpec):
        raise InteropError(f"{spec.name}: timm's RegNetCfg has no explicit-stage form")
    if spec.q != 8:
        raise InteropError(f"{spec.name}: q: timm quantizes widths to 8, the spec has {spec.q}")
    if spec.stem != "imagenet":
        raise InteropError(f"{spec.name}: stem: timm's RegNet has only the stride-2 ImageNet stem")
    if not spec.downsample_in_first_stage:
        raise InteropError(f"{spec.name}: downsample_in_first_stage: timm always uses stride 2")
    if spec.bottleneck_multiplier > 1:
        raise InteropError(
            f"{spec.name}: bottleneck_multiplier: timm rounds bm > 1 differently from pycls"
        )
    planned = make_plan(spec)
    n = planned.num_stages
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
        group_min_ratio=_timm_rounding(spec, planned),
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
            f"timm RegNetCfg: group_min_ratio={merged['group_min_ratio']!r}; only 0 (rounding "
            "timm) and 0.9 (rounding torchvision) convert"
        )
    se = merged["se_ratio"]
    fields: dict[str, Any] = {
        "name": name,
        "block": "y" if se else "x",
        "se_ratio": float(se),
        "depth": merged["depth"],
        "w0": merged["w0"],
        "wa": float(merged["wa"]) if is_number(merged["wa"]) else merged["wa"],
        "wm": float(merged["wm"]) if is_number(merged["wm"]) else merged["wm"],
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
