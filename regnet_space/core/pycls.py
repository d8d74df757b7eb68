"""pycls config files (yacs YAML, as in pycls's model zoo) <-> specs.

MODEL.TYPE regnet maps to a parametric spec (REGNET.DEPTH, W0, WA, WM, GROUP_W, SE_ON, SE_R,
BOT_MUL, STEM_W), anynet to an explicit one (ANYNET.DEPTHS, WIDTHS, STRIDES, BOT_MULS,
GROUP_WS); both with STEM_TYPE (simple_stem_in, res_stem_cifar, res_stem_in), BLOCK_TYPE
(res_bottleneck_block, res_bottleneck_linear_block; anynet also vanilla_block and
res_basic_block) and HEAD_W. Other model types and values are refused with one line naming
the key. pycls's SE uses the model's activation (ACTIVATION_FUN), so the spec's se_activation
is it. Defaults are pycls's own (pycls/core/config.py), NUM_CLASSES 10 included. Plain Python:
files reach it through the one spec reader (`core.reader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..infra.dumping import yaml_comment
from ..infra.parsing import is_int, is_number, parse_yaml
from ..infra.text import short
from .blocks import peer_refusal
from .errors import InteropError, SpecError
from .generator import make_plan, to_explicit
from .spec import ParametricSpec, Spec, spec_from_dict

__all__ = [
    "pycls_yaml_from_spec",
    "spec_from_pycls_dict",
    "spec_from_pycls_yaml",
]


# pycls's defaults (pycls/core/config.py) for the fields read here.
_PYCLS_REGNET = {
    "STEM_TYPE": "simple_stem_in",
    "STEM_W": 32,
    "BLOCK_TYPE": "res_bottleneck_block",
    "STRIDE": 2,
    "SE_ON": False,
    "SE_R": 0.25,
    "DEPTH": 10,
    "W0": 32,
    "WA": 5.0,
    "WM": 2.5,
    "GROUP_W": 16,
    "BOT_MUL": 1.0,
    "HEAD_W": 0,
}
# pycls's stem types: simple_stem_in (3x3 stride 2), res_stem_cifar (3x3 stride 1) and
# res_stem_in (7x7 stride 2, max-pool).
_PYCLS_STEMS = {"simple_stem_in": "imagenet", "res_stem_cifar": "cifar", "res_stem_in": "resnet"}
_STEM_TYPES = {v: k for k, v in _PYCLS_STEMS.items()}
# pycls's block types -> spec fields (block x or y by SE_ON for the bottlenecks).
_PYCLS_BLOCKS: dict[str, dict[str, Any]] = {
    "res_bottleneck_block": {},
    "res_bottleneck_linear_block": {
        "linear_out": True,
        "shortcut": "none",
        "final_activation": False,
    },
    "vanilla_block": {"block": "vanilla"},
    "res_basic_block": {"block": "basic"},
}
_PYCLS_ANYNET = {
    "STEM_TYPE": "simple_stem_in",
    "STEM_W": 32,
    "BLOCK_TYPE": "res_bottleneck_block",
    "DEPTHS": [],
    "WIDTHS": [],
    "STRIDES": [],
    "BOT_MULS": [],
    "GROUP_WS": [],
    "SE_ON": False,
    "SE_R": 0.25,
    "HEAD_W": 0,
}
_PYCLS_ACTIVATIONS = {"relu": "relu", "silu": "silu", "swish": "silu", "gelu": "gelu"}
_PYCLS_DEFAULT_CLASSES = 10  # pycls's MODEL.NUM_CLASSES default


class _Section:
    """One pycls config section with typed, named access (errors name SECTION.KEY)."""

    def __init__(self, data: Any, section: str, defaults: Mapping[str, Any], source: str):
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InteropError(f"{source}: {section}: expected a mapping")
        unknown = [k for k in data if k not in defaults]
        if unknown:
            raise InteropError(f"{source}: {section}.{unknown[0]}: unknown or unsupported key")
        self.values = {**defaults, **data}
        self.section, self.source = section, source

    def _bad(self, key: str, what: str) -> InteropError:
        value = self.values[key]
        return InteropError(
            f"{self.source}: {self.section}.{key}: expected {what}, got {short(value)}"
        )

    def integer(self, key: str) -> int:
        value = self.values[key]
        if not is_int(value):
            raise self._bad(key, "an integer")
        return value

    def number(self, key: str) -> float:
        value = self.values[key]
        if not is_number(value):
            raise self._bad(key, "a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.values[key]
        if not isinstance(value, bool):
            raise self._bad(key, "True or False")
        return value

    def fixed(self, key: str, allowed: Any) -> None:
        """Refuse any value but `allowed` (what this package's model builds)."""
        if self.values[key] != allowed:
            raise InteropError(
                f"{self.source}: {self.section}.{key}: {short(self.values[key])} is not supported "
                f"(only {allowed!r})"
            )

    def numbers(self, key: str, floats: bool = False) -> list[Any]:
        value = self.values[key]
        check = is_number if floats else is_int
        if not isinstance(value, list) or not all(check(v) for v in value):
            raise self._bad(key, "a list of numbers" if floats else "a list of integers")
        return [float(v) for v in value] if floats else list(value)


_MODEL_KEYS = {
    "TYPE": "",
    "NUM_CLASSES": _PYCLS_DEFAULT_CLASSES,
    "DEPTH": 0,
    "LOSS_FUN": "cross_entropy",
    "ACTIVATION_FUN": "relu",
    "ACTIVATION_INPLACE": True,
    "SCALING_TYPE": "",
    "SCALING_FACTOR": 1.0,
}


def spec_from_pycls_yaml(text: str, source: str = "<pycls yaml>", name: str | None = None) -> Spec:
    """The spec of a pycls config: MODEL.TYPE regnet (parametric) or anynet (explicit)."""
    data = parse_yaml(text, source, "pycls config", error=SpecError)
    return spec_from_pycls_dict(data, source, name)


def spec_from_pycls_dict(
    data: Any, source: str = "<pycls config>", name: str | None = None
) -> Spec:
    """The spec of a parsed pycls config (the mapping yacs reads from its YAML)."""
    if not isinstance(data, Mapping) or "MODEL" not in data:
        raise InteropError(f"{source}: not a pycls config (no MODEL section)")
    model = _Section(data["MODEL"], "MODEL", _MODEL_KEYS, source)
    kind = str(model.values["TYPE"]).lower()
    if kind not in ("regnet", "anynet"):
        raise InteropError(
            f"{source}: MODEL.TYPE: {model.values['TYPE']!r} is not a RegNet "
            "(only regnet and anynet configs import)"
        )
    act = _PYCLS_ACTIVATIONS.get(str(model.values["ACTIVATION_FUN"]).lower())
    if act is None:
        raise InteropError(
            f"{source}: MODEL.ACTIVATION_FUN: {model.values['ACTIVATION_FUN']!r} is not supported"
        )
    bn = data.get("BN") or {}
    if isinstance(bn, Mapping) and bn.get("EPS", 1e-5) != 1e-5:
        raise InteropError(f"{source}: BN.EPS: only the default 1e-5 is supported")
    common: dict[str, Any] = {
        "name": name or ("pycls-regnet" if source.startswith("<") else Path(source).stem),
        "num_classes": model.integer("NUM_CLASSES"),
        "activation": act,
    }
    if kind == "regnet":
        return _pycls_regnet(_Section(data.get("REGNET"), "REGNET", _PYCLS_REGNET, source), common)
    return _pycls_anynet(_Section(data.get("ANYNET"), "ANYNET", _PYCLS_ANYNET, source), common)


def _one_of(sec: _Section, key: str, table: dict[str, Any]) -> Any:
    value = sec.values[key]
    if not isinstance(value, str) or value not in table:
        raise InteropError(
            f"{sec.source}: {sec.section}.{key}: {value!r} is not supported "
            f"(one of {', '.join(table)})"
        )
    return table[value]


def _pycls_common(sec: _Section, fields: dict[str, Any], blocks: tuple[str, ...]) -> dict[str, Any]:
    stem = _one_of(sec, "STEM_TYPE", _PYCLS_STEMS)
    block = _one_of(sec, "BLOCK_TYPE", {k: _PYCLS_BLOCKS[k] for k in blocks})
    se_on = sec.flag("SE_ON")
    head = sec.integer("HEAD_W")
    if head < 0:
        raise sec._bad("HEAD_W", "a width >= 0")
    se = {"se_ratio": sec.number("SE_R"), "se_activation": fields["activation"]} if se_on else {}
    return {
        **fields,
        "block": "y" if se_on else "x",
        **block,
        "se_ratio": 0.0,
        **se,
        "stem_width": sec.integer("STEM_W"),
        **({"stem": stem} if stem != "imagenet" else {}),
        **({"head_width": head} if head else {}),
    }


def _pycls_regnet(sec: _Section, common: dict[str, Any]) -> Spec:
    sec.fixed("STRIDE", 2)
    bottlenecks = ("res_bottleneck_block", "res_bottleneck_linear_block")
    fields = _pycls_common(sec, common, bottlenecks) | {
        "depth": sec.integer("DEPTH"),
        "w0": sec.integer("W0"),
        "wa": sec.number("WA"),
        "wm": sec.number("WM"),
        "group_width": sec.integer("GROUP_W"),
        "bottleneck_multiplier": sec.number("BOT_MUL"),
    }
    return spec_from_dict(fields, sec.source)


def _pycls_anynet(sec: _Section, common: dict[str, Any]) -> Spec:
    depths, widths = sec.numbers("DEPTHS"), sec.numbers("WIDTHS")
    n = len(depths)
    strides = sec.numbers("STRIDES") or [2] * n
    fields = _pycls_common(sec, common, tuple(_PYCLS_BLOCKS))
    full = fields["block"] in ("vanilla", "basic")  # no bottleneck: pycls passes None
    for key in ("BOT_MULS", "GROUP_WS"):
        if full and sec.values[key]:
            raise InteropError(
                f"{sec.source}: ANYNET.{key}: {sec.values['BLOCK_TYPE']} takes none (give [])"
            )
    bms = sec.numbers("BOT_MULS", floats=True) or [1.0] * n
    gws = sec.numbers("GROUP_WS") or [None if full else 1] * n
    for key, values in (("WIDTHS", widths), ("STRIDES", strides)):
        if len(values) != n:
            raise InteropError(f"{sec.source}: ANYNET.{key}: {len(values)} entries for {n} stages")
    for key, values in (("BOT_MULS", bms), ("GROUP_WS", gws)):
        if len(values) != n:
            raise InteropError(f"{sec.source}: ANYNET.{key}: {len(values)} entries for {n} stages")
    stages = [
        {"width": w, "depth": d, "stride": s}
        | ({} if full else {"group_width": g, "bottleneck_multiplier": b})
        for d, w, s, b, g in zip(depths, widths, strides, bms, gws, strict=True)
    ]
    return spec_from_dict(fields | {"stages": stages}, sec.source)


def pycls_yaml_from_spec(spec: Spec) -> str:
    """pycls config text (REGNET for parametric specs, ANYNET for explicit ones)."""
    if spec.num_channels != 3:
        raise InteropError(f"{spec.name}: num_channels: pycls builds 3-channel stems only")
    why = peer_refusal(make_plan(spec), "pycls")
    for field, value in (("drop_path", spec.drop_path), ("output_stride", spec.output_stride)):
        why = why or (f"{field}: {value}: pycls has no such setting" if value else None)
    if why is not None:
        raise InteropError(f"{spec.name}: {why}")
    model: dict[str, Any] = {"TYPE": "regnet", "NUM_CLASSES": spec.num_classes}
    if spec.activation != "relu":
        model["ACTIVATION_FUN"] = spec.activation
    se: dict[str, Any] = {"SE_ON": spec.se_ratio > 0}
    if spec.se_ratio > 0 and spec.se_ratio != 0.25:
        se["SE_R"] = spec.se_ratio
    block_type = {"vanilla": "vanilla_block", "basic": "res_basic_block"}.get(
        spec.block, "res_bottleneck_linear_block" if spec.linear_out else "res_bottleneck_block"
    )
    head = {"HEAD_W": spec.head_width} if spec.head_width else {}
    if isinstance(spec, ParametricSpec):
        body = {"MODEL": model, "REGNET": _regnet_section(spec, block_type, se) | head}
    else:
        anynet = _anynet_section(spec, block_type, se) | head
        body = {"MODEL": model | {"TYPE": "anynet"}, "ANYNET": anynet}
    return yaml_comment(spec.name) + yaml.safe_dump(body, sort_keys=False)


def _regnet_section(spec: ParametricSpec, block_type: str, se: dict[str, Any]) -> dict[str, Any]:
    """The REGNET section of a parametric spec (pycls's defaults left out)."""
    as_pycls = spec.model_copy(update={"rounding": "pycls"})
    if spec.rounding == "torchvision" or (
        spec.rounding == "timm" and make_plan(spec).stages != make_plan(as_pycls).stages
    ):
        raise InteropError(
            f"{spec.name}: rounding: pycls has only its own (float64) rule, which builds a "
            f"different network from rounding {spec.rounding}"
        )
    if spec.q != 8:
        raise InteropError(f"{spec.name}: q: pycls quantizes widths to 8, got {spec.q}")
    if not spec.downsample_in_first_stage:
        raise InteropError(f"{spec.name}: downsample_in_first_stage: pycls strides every stage")
    regnet: dict[str, Any] = {
        **se,
        "DEPTH": spec.depth,
        "W0": spec.w0,
        "WA": spec.wa,
        "WM": spec.wm,
        "GROUP_W": spec.group_width,
    }
    if spec.bottleneck_multiplier != 1:
        regnet["BOT_MUL"] = spec.bottleneck_multiplier
    if spec.stem_width != 32:
        regnet["STEM_W"] = spec.stem_width
    if spec.stem != "imagenet":
        regnet["STEM_TYPE"] = _STEM_TYPES[spec.stem]
    if block_type != "res_bottleneck_block":
        regnet["BLOCK_TYPE"] = block_type
    return regnet


def _anynet_section(spec: Spec, block_type: str, se: dict[str, Any]) -> dict[str, Any]:
    """The ANYNET section of a spec's explicit stages."""
    explicit = to_explicit(spec)
    full = spec.block in ("vanilla", "basic")  # pycls takes no bottleneck or groups there
    return {
        "STEM_TYPE": _STEM_TYPES[explicit.stem],
        "STEM_W": explicit.stem_width,
        "BLOCK_TYPE": block_type,
        "DEPTHS": [s.depth for s in explicit.stages],
        "WIDTHS": [s.width for s in explicit.stages],
        "STRIDES": list(explicit.strides()),
        "BOT_MULS": [] if full else [s.bottleneck_multiplier for s in explicit.stages],
        "GROUP_WS": [] if full else [s.group_width for s in explicit.stages],
        **se,
    }
