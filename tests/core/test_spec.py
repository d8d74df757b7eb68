"""The spec: loading (file, text, dict), both forms, defaults, immutability and round trips
(the hostile corpus is test_spec_hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from spec_helpers import X_DICT, X_TEXT, check_x200

from regnet_space import (
    ExplicitSpec,
    ParametricSpec,
    SpecError,
    count,
    dump_spec,
    load_spec,
    plan,
    to_explicit,
)
from regnet_space.core import errors as errors_module
from regnet_space.core.spec import spec_from_dict, spec_from_text, spec_json_schema

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
FROZEN_ERRORS = (ValidationError, TypeError, AttributeError)
SHIPPED = sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))

EXPLICIT_TEXT = """\
name: tiny-explicit
block: y
stages:
  - {width: 48, depth: 1, group_width: 16}
  - {width: 96, depth: 2, group_width: 16}
  - width: 192
    depth: 3
    group_width: 32
    bottleneck_multiplier: 0.5
"""

EXPLICIT_DICT = {
    "name": "tiny-explicit",
    "block": "y",
    "stages": [
        {"width": 48, "depth": 1, "group_width": 16},
        {"width": 96, "depth": 2, "group_width": 16},
        {"width": 192, "depth": 3, "group_width": 32, "bottleneck_multiplier": 0.5},
    ],
}


def test_spec_error_type():
    assert errors_module.SpecError is SpecError
    assert issubclass(SpecError, ValueError)


# ---------------------------------------------------------------------------------------------
# Loading from a file, text and a mapping


def test_load_from_path_str_text_and_dict(tmp_path):
    f = tmp_path / "x002.yaml"
    f.write_text(X_TEXT, encoding="utf-8")
    loaded = [load_spec(f), load_spec(str(f)), load_spec(X_TEXT), load_spec(X_DICT)]
    loaded += [load_spec(f), spec_from_text(X_TEXT), spec_from_dict(X_DICT)]
    for s in loaded:
        check_x200(s)
    assert all(s == loaded[0] for s in loaded)
    # A spec passes through unchanged.
    assert load_spec(loaded[0]) is loaded[0]


def test_shipped_spec_equals_text_and_dict_forms():
    s = load_spec(SPECS_DIR / "x002.yaml")
    assert s == load_spec(X_TEXT) == load_spec(X_DICT)


def test_load_does_not_mutate_the_dict():
    d = dict(X_DICT)
    load_spec(d)
    assert d == X_DICT


def test_mapping_other_than_dict():
    from types import MappingProxyType

    check_x200(load_spec(MappingProxyType(X_DICT)))


def test_explicit_form_from_text_dict_and_file(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text(EXPLICIT_TEXT, encoding="utf-8")
    for src in (EXPLICIT_TEXT, EXPLICIT_DICT, f, str(f)):
        s = load_spec(src)
        assert isinstance(s, ExplicitSpec)
        assert [(st.width, st.depth, st.group_width) for st in s.stages] == [
            (48, 1, 16),
            (96, 2, 16),
            (192, 3, 32),
        ]
        assert [st.bottleneck_multiplier for st in s.stages] == [1.0, 1.0, 0.5]
        p = plan(s)
        assert p.widths == (48, 96, 192)
        assert p.depths == (1, 2, 3)
        assert p.bottleneck_widths == (48, 96, 96)
        assert p.group_widths == (16, 16, 32)
        assert p.strides == (2, 2, 2)
        assert p.generation is None


def test_explicit_form_strides():
    d = {**EXPLICIT_DICT, "downsample_in_first_stage": False}
    assert plan(load_spec(d)).strides == (1, 2, 2)
    stages = [dict(st) for st in EXPLICIT_DICT["stages"]]
    stages[2]["stride"] = 1
    assert plan(load_spec({**EXPLICIT_DICT, "stages": stages})).strides == (2, 2, 1)


def test_form_is_chosen_by_stages_key():
    assert isinstance(load_spec(X_DICT), ParametricSpec)
    assert isinstance(load_spec(EXPLICIT_DICT), ExplicitSpec)


# ---------------------------------------------------------------------------------------------
# Defaults


def test_parametric_defaults():
    s = load_spec(X_DICT)
    assert s.se_ratio == 0
    assert s.stem_width == 32
    assert s.q == 8
    assert s.rounding == "pycls"
    assert s.num_channels == 3
    assert s.num_classes == 1000
    assert s.activation == "relu"
    assert s.downsample_in_first_stage is True
    assert s.bottleneck_multiplier == 1.0


def test_y_default_se_ratio():
    s = load_spec({**X_DICT, "block": "y"})
    assert s.se_ratio == 0.25
    e = load_spec(EXPLICIT_DICT)
    assert e.block == "y"
    assert e.se_ratio == 0.25


def test_explicit_defaults():
    s = load_spec({**EXPLICIT_DICT, "block": "x"})
    assert s.se_ratio == 0
    assert s.stem_width == 32
    assert s.num_channels == 3
    assert s.num_classes == 1000
    assert s.activation == "relu"
    assert s.downsample_in_first_stage is True
    assert s.stages[0].bottleneck_multiplier == 1.0
    assert s.stages[0].stride is None


def test_explicit_values_override_defaults():
    s = load_spec({**X_DICT, "block": "y", "se_ratio": 0.5, "stem_width": 64, "q": 4})
    assert (s.se_ratio, s.stem_width, s.q) == (0.5, 64, 4)
    s = load_spec({**X_DICT, "rounding": "torchvision", "activation": "silu", "num_classes": 0})
    assert (s.rounding, s.activation, s.num_classes) == ("torchvision", "silu", 0)


# ---------------------------------------------------------------------------------------------
# Frozen models


@pytest.mark.parametrize(
    ("field", "value"), [("depth", 14), ("w0", 32), ("name", "other"), ("se_ratio", 0.25)]
)
def test_parametric_spec_is_frozen(field, value):
    s = load_spec(X_DICT)
    with pytest.raises(FROZEN_ERRORS):
        setattr(s, field, value)
    assert s == load_spec(X_DICT)


def test_explicit_spec_is_frozen():
    s = to_explicit(load_spec(X_DICT))
    before = dump_spec(s)
    with pytest.raises(FROZEN_ERRORS):
        s.name = "other"
    with pytest.raises(FROZEN_ERRORS):
        s.stages[0].width = 8
    with pytest.raises((TypeError, AttributeError)):
        s.stages.append(s.stages[0])  # type: ignore[attr-defined]
    assert dump_spec(s) == before


def test_specs_are_hashable_values():
    assert hash(load_spec(X_DICT)) == hash(load_spec(X_TEXT))


# ---------------------------------------------------------------------------------------------
# Round trips and the explicit form of a parametric spec


@pytest.mark.parametrize("stem", SHIPPED)
def test_dump_load_round_trip(stem):
    s = load_spec(SPECS_DIR / f"{stem}.yaml")
    text = dump_spec(s)
    assert isinstance(text, str)
    again = load_spec(text)
    assert again == s
    assert type(again) is type(s)
    assert dump_spec(again) == text


@pytest.mark.parametrize("stem", SHIPPED)
def test_explicit_round_trip(stem):
    e = to_explicit(load_spec(SPECS_DIR / f"{stem}.yaml"))
    assert isinstance(e, ExplicitSpec)
    again = load_spec(dump_spec(e))
    assert isinstance(again, ExplicitSpec)
    assert again == e


def test_round_trip_through_a_file(tmp_path):
    s = load_spec({**X_DICT, "block": "y", "se_ratio": 0.5, "rounding": "torchvision"})
    f = tmp_path / "s.yaml"
    f.write_text(dump_spec(s), encoding="utf-8")
    assert load_spec(f) == s


def test_dump_is_plain_yaml():
    data = yaml.safe_load(dump_spec(load_spec(X_DICT)))
    assert data["name"] == "RegNetX-200MF"
    assert data["depth"] == 13
    assert data["wa"] == 36.44


@pytest.mark.parametrize("stem", SHIPPED)
def test_to_explicit_builds_the_same_network(stem):
    s = load_spec(SPECS_DIR / f"{stem}.yaml")
    e = to_explicit(s)
    assert isinstance(e, ExplicitSpec)
    assert e.name == s.name
    assert (e.block, e.se_ratio, e.stem_width) == (s.block, s.se_ratio, s.stem_width)
    for size in (224, 97):
        ps, pe = plan(s, size), plan(e, size)
        assert pe.widths == ps.widths
        assert pe.depths == ps.depths
        assert pe.group_widths == ps.group_widths
        assert pe.bottleneck_widths == ps.bottleneck_widths
        assert pe.strides == ps.strides
        assert pe.blocks == ps.blocks
        assert pe.stem_size == ps.stem_size
        for convention in ("paper", "fvcore", "torchvision"):
            assert count(e, size, convention) == count(s, size, convention)


def test_to_explicit_keeps_options():
    s = load_spec(
        {
            **X_DICT,
            "block": "y",
            "se_ratio": 0.5,
            "stem_width": 16,
            "num_channels": 1,
            "num_classes": 10,
            "activation": "silu",
            "downsample_in_first_stage": False,
            "bottleneck_multiplier": 0.5,
        }
    )
    e = to_explicit(s)
    assert (e.se_ratio, e.stem_width, e.num_channels, e.num_classes) == (0.5, 16, 1, 10)
    assert (e.activation, e.downsample_in_first_stage) == ("silu", False)
    assert all(st.bottleneck_multiplier == 0.5 for st in e.stages)
    assert plan(e).strides == plan(s).strides
    assert plan(e).strides[0] == 1
    assert count(e) == count(s)
    assert to_explicit(e) is e


def test_stem_field_defaults_to_imagenet_and_refuses_other_values() -> None:
    base = {"name": "s", "block": "x", "depth": 4, "w0": 16, "wa": 8.0, "wm": 2.0}
    base["group_width"] = 8
    assert spec_from_dict(base).stem == "imagenet"
    cifar = spec_from_dict(base | {"stem": "cifar"})
    assert cifar.stem == "cifar"
    # Written back only when it is not the default; read back equal either way.
    assert "\nstem: cifar\n" in dump_spec(cifar)
    assert "\nstem:" not in dump_spec(spec_from_dict(base))
    assert spec_from_text(dump_spec(cifar)) == cifar
    explicit = to_explicit(cifar)
    assert explicit.stem == "cifar" and spec_from_text(dump_spec(explicit)) == explicit
    with pytest.raises(
        SpecError, match="stem: Input should be 'imagenet', 'cifar', 'resnet' or 'tiered'"
    ) as err:
        spec_from_dict(base | {"stem": "CIFAR"})
    assert "\n" not in str(err.value)
    schema = spec_json_schema()
    assert "stem" in str(schema) and "cifar" in str(schema)


def test_an_explicit_first_stride_dumps_without_the_default_flag() -> None:
    stages = [{"width": 16, "depth": 1, "group_width": 8, "stride": 1}]
    spec = spec_from_dict({"name": "e", "block": "x", "stages": stages})
    text = dump_spec(spec)
    assert "downsample_in_first_stage" not in text
    assert spec_from_text(text) == spec
    flagged = spec_from_dict(
        {"name": "e", "block": "x", "stages": stages[:1]} | {"downsample_in_first_stage": False}
    )
    assert spec_from_text(dump_spec(flagged)) == flagged
