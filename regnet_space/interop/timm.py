"""timm `RegNetCfg` <-> spec: the parametric design with timm's names and switches.

timm's regnet.py builds X, Y, Z (linear output, no shortcut where the shape changes), V
(pre-activation) and GroupNorm RegNets from one `RegNetCfg`; its ByobNet RegNetZs
(regnetz_b16 ... e8) are explicit stages with their own key layout (shipped as presets, their
weights converted by interop.checkpoints).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import InteropError
from ..core.generator import Plan, make_plan
from ..core.spec import ParametricSpec, Spec, spec_from_dict
from ..infra.parsing import is_number


@dataclass(frozen=True)
class TimmRegNetCfg:
    """The fields of timm's `RegNetCfg`, plus the model's `in_chans`, `num_classes`,
    `output_stride` and `drop_path_rate`. `norm_layer` is "batchnorm" or "groupnorm" (timm's
    GroupNormAct with `norm_group_size` channels per group or `norm_groups` groups)."""

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
    norm_group_size: int = 0
    norm_groups: int = 0
    in_chans: int = 3
    num_classes: int = 1000
    output_stride: int = 32
    drop_path_rate: float = 0.0

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `timm.models.regnet.RegNetCfg` (a GroupNorm as timm's
        `partial(GroupNormAct, ...)`, which imports timm)."""
        data = dataclasses.asdict(self)
        for key in ("in_chans", "num_classes", "output_stride", "drop_path_rate"):
            del data[key]
        size, groups = data.pop("norm_group_size"), data.pop("norm_groups")
        if self.norm_layer == "groupnorm":
            from timm.layers import GroupNormAct

            data["norm_layer"] = functools.partial(
                GroupNormAct, **({"group_size": size} if size else {"num_groups": groups})
            )
        return data

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `timm.models.regnet.RegNet` besides the cfg."""
        return {
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "output_stride": self.output_stride,
            "drop_path_rate": self.drop_path_rate,
        }


# timm's `group_min_ratio`: 0 is pycls's group-width rounding (without its lcm for bm > 1),
# 0.9 torchvision's make-divisible; timm's width rule runs in torch float32 either way, so a
# config imports as rounding timm or torchvision (both float32), never pycls (float64).
_TIMM_ROUNDING = {"timm": 0.0, "torchvision": 0.9}
_DOWNSAMPLE = {"conv": "conv1x1", "avg": "avg", "none": None}


def _timm_rounding(spec: ParametricSpec, planned: Plan) -> float:
    """timm's group_min_ratio for the spec (planned: its plan); pycls only if float32 agrees."""
    if spec.rounding != "pycls":
        return _TIMM_ROUNDING[spec.rounding]
    as_timm = make_plan(spec.model_copy(update={"rounding": "timm"}))
    if as_timm.stages != planned.stages:
        raise InteropError(
            f"{spec.name}: rounding: timm's float32 width rule gives widths "
            f"{list(as_timm.widths)}, pycls's float64 rule {list(planned.widths)} (a .5 tie, "
            "or bm > 1); use rounding: timm to convert"
        )
    return _TIMM_ROUNDING["timm"]


def _refusal(spec: ParametricSpec) -> str | None:
    """The first field timm's RegNetCfg cannot express, with why; None if it can."""
    se = spec.se_ratio > 0
    checks = [
        (spec.q != 8, f"q: timm quantizes widths to 8, the spec has {spec.q}"),
        (spec.stem != "imagenet", "stem: timm's RegNet has only the stride-2 ImageNet stem"),
        (not spec.downsample_in_first_stage, "downsample_in_first_stage: timm always strides"),
        (spec.block in ("vanilla", "basic"), f"block: timm's RegNet has no {spec.block} blocks"),
        (spec.bottleneck_in, "bottleneck_in: only timm's ByobNet has it"),
        (se and spec.se_from != "input", "se_from: timm's RegNet takes SE from the input"),
        (
            not spec.head_width and spec.final_activation != (spec.preact or spec.linear_out),
            "final_activation: timm's RegNet has one exactly after preact or linear_out blocks",
        ),
        (
            se and spec.se_activation != spec.activation,
            f"se_activation: timm's RegNet uses the block's activation ({spec.activation}) in SE",
        ),
    ]
    return next((why for failed, why in checks if failed), None)


def timm_cfg_from_spec(spec: Spec) -> TimmRegNetCfg:
    """timm's config for a parametric spec with 4 stages, q = 8 and stride 2 everywhere."""
    if not isinstance(spec, ParametricSpec):
        raise InteropError(f"{spec.name}: timm's RegNetCfg has no explicit-stage form")
    why = _refusal(spec)
    if why is not None:
        raise InteropError(f"{spec.name}: {why}")
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
        downsample=_DOWNSAMPLE[spec.shortcut],
        linear_out=spec.linear_out,
        preact=spec.preact,
        num_features=spec.head_width,
        act_layer=spec.activation,
        norm_layer="groupnorm" if spec.norm == "group" else "batchnorm",
        norm_group_size=spec.norm_group_size,
        norm_groups=spec.norm_groups,
        in_chans=spec.num_channels,
        num_classes=spec.num_classes,
        output_stride=spec.output_stride or 32,
        drop_path_rate=spec.drop_path,
    )


def _timm_fields(cfg: TimmRegNetCfg | Mapping[str, Any] | Any) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(TimmRegNetCfg)]
    if isinstance(cfg, Mapping):
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            raise InteropError(f"timm RegNetCfg: unknown field {unknown[0]!r}")
        return dict(cfg)
    return {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}


def _norm_fields(norm: Any) -> dict[str, Any]:
    """Our norm fields of timm's norm_layer: a name, or a partial of timm's GroupNormAct."""
    keywords: dict[str, Any] = {}
    if isinstance(norm, functools.partial):
        norm, keywords = norm.func, dict(norm.keywords)
    name = norm if isinstance(norm, str) else getattr(norm, "__name__", type(norm).__name__)
    key = name.replace("_", "").lower()
    if key in ("batchnorm", "batchnorm2d", "batchnormact2d") and not keywords:
        return {}
    if key in ("groupnorm", "groupnormact") and set(keywords) <= {"group_size", "num_groups"}:
        if keywords.get("group_size"):
            return {"norm": "group", "norm_group_size": keywords["group_size"]}
        return {"norm": "group", "norm_groups": keywords.get("num_groups", 32)}
    raise InteropError(
        f"timm RegNetCfg: norm_layer={name!r}{' ' + str(keywords) if keywords else ''} is "
        "not a norm a spec has (batchnorm, or GroupNormAct by group_size or num_groups)"
    )


def _block_fields(merged: Mapping[str, Any]) -> dict[str, Any]:
    """block and the switches that differ from its defaults, from timm's flags."""
    downsample = merged["downsample"] or None
    shortcut = {v: k for k, v in _DOWNSAMPLE.items()}.get(downsample)
    if shortcut is None:
        raise InteropError(
            f"timm RegNetCfg: downsample={downsample!r}; expected conv1x1, avg or None"
        )
    se, preact, linear = (
        bool(merged["se_ratio"]),
        bool(merged["preact"]),
        bool(merged["linear_out"]),
    )
    if preact:
        block = "w" if linear else "v"
    elif linear:
        block = "z"
    else:
        block = "y" if se else "x"
    return {"block": block, "preact": preact, "linear_out": linear, "shortcut": shortcut}


def spec_from_timm_cfg(
    cfg: TimmRegNetCfg | Mapping[str, Any] | Any,
    name: str = "timm-regnet",
    *,
    num_classes: int | None = None,
    num_channels: int | None = None,
) -> ParametricSpec:
    """The parametric spec of a timm `RegNetCfg` (object, its kwargs, or TimmRegNetCfg).

    timm's SE uses the block's activation: the spec's se_activation is act_layer.
    """
    data = _timm_fields(cfg)
    default = TimmRegNetCfg(depth=1, w0=8, wa=0.0, wm=2.0, group_size=8)
    merged = {**dataclasses.asdict(default), **data}
    act = merged["act_layer"]
    if not isinstance(act, str):
        raise InteropError(f"timm RegNetCfg: act_layer: give a name, got {type(act).__name__}")
    act = {"swish": "silu"}.get(act, act)
    rounding = {v: k for k, v in _TIMM_ROUNDING.items()}.get(merged["group_min_ratio"])
    if rounding is None:
        raise InteropError(
            f"timm RegNetCfg: group_min_ratio={merged['group_min_ratio']!r}; only 0 (rounding "
            "timm) and 0.9 (rounding torchvision) convert"
        )
    norm = _norm_fields(merged["norm_layer"])
    groups = {k: merged[k] for k in ("norm_group_size", "norm_groups") if merged[k]}
    if groups:  # a TimmRegNetCfg's own fields
        norm = {"norm": "group", **groups}
    se = merged["se_ratio"]
    fields: dict[str, Any] = {
        "name": name,
        **_block_fields(merged),
        "se_ratio": float(se),
        "depth": merged["depth"],
        "w0": merged["w0"],
        "wa": float(merged["wa"]) if is_number(merged["wa"]) else merged["wa"],
        "wm": float(merged["wm"]) if is_number(merged["wm"]) else merged["wm"],
        "group_width": merged["group_size"],
        "bottleneck_multiplier": float(merged["bottle_ratio"]),
        "stem_width": merged["stem_width"],
        "activation": act,
        **({"se_activation": act} if se else {}),
        "head_width": merged["num_features"],
        **norm,
        "rounding": rounding,
        "num_classes": merged["num_classes"] if num_classes is None else num_classes,
        "num_channels": merged["in_chans"] if num_channels is None else num_channels,
    }
    if merged["output_stride"] != 32:
        fields["output_stride"] = merged["output_stride"]
    if merged["drop_path_rate"]:
        fields["drop_path"] = merged["drop_path_rate"]
    spec = spec_from_dict(fields, "timm RegNetCfg")
    if not isinstance(spec, ParametricSpec):  # pragma: no cover - no `stages` field is given
        raise InteropError("timm RegNetCfg: expected a parametric design")
    return spec
