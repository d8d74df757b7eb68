"""The spec: loading (file, text, dict), both forms, defaults, immutability, round trips and a
hostile corpus in which every case must raise a one-line SpecError naming its source."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

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

X_TEXT = """\
name: RegNetX-200MF
block: x
depth: 13
w0: 24
wa: 36.44
wm: 2.49
group_width: 8
"""

X_DICT = {
    "name": "RegNetX-200MF",
    "block": "x",
    "depth": 13,
    "w0": 24,
    "wa": 36.44,
    "wm": 2.49,
    "group_width": 8,
}

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


def _check_x200(s):
    assert isinstance(s, ParametricSpec)
    assert (s.name, s.block, s.depth, s.w0, s.wa, s.wm, s.group_width) == (
        "RegNetX-200MF",
        "x",
        13,
        24,
        36.44,
        2.49,
        8,
    )


def test_load_from_path_str_text_and_dict(tmp_path):
    f = tmp_path / "x002.yaml"
    f.write_text(X_TEXT, encoding="utf-8")
    loaded = [load_spec(f), load_spec(str(f)), load_spec(X_TEXT), load_spec(X_DICT)]
    loaded += [load_spec(f), spec_from_text(X_TEXT), spec_from_dict(X_DICT)]
    for s in loaded:
        _check_x200(s)
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

    _check_x200(load_spec(MappingProxyType(X_DICT)))


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


# ---------------------------------------------------------------------------------------------
# The hostile corpus


def _with(**changes):
    """X_TEXT with fields replaced (value None removes the field); values are YAML text."""
    lines = [ln for ln in X_TEXT.splitlines() if ln.split(":")[0] not in changes]
    lines += [f"{k}: {v}" for k, v in changes.items() if v is not None]
    return "\n".join(lines) + "\n"


def _y(**changes):
    return _with(block="y", **changes)


def _explicit(stages_yaml: str, **top) -> str:
    head = "".join(f"{k}: {v}\n" for k, v in {"name": "e", "block": "x", **top}.items())
    return head + "stages:\n" + stages_yaml


# (id, text, field path named in the message or None, extra substrings the message must hold)
TEXT_CASES: list[tuple[str, str, str | None, tuple[str, ...]]] = [
    # syntax
    ("syntax-unclosed-flow", "name: [unclosed\nblock: x\n", None, ()),
    ("syntax-bad-indent", "name: t\n  block: x\n depth: 3\n", None, ()),
    ("syntax-unclosed-quote", "name: 'oops\nblock: x\n", None, ()),
    ("tab-indent", "name: t\n\tblock: x\n", None, ()),
    ("tab-in-mapping", X_TEXT + "stages:\n\t- width: 8\n", None, ()),
    # wrong types
    ("string-for-int", _with(depth="'13'"), "depth", ()),
    ("word-for-int", _with(depth="thirteen"), "depth", ()),
    ("float-for-int-w0", _with(w0="96.5"), "w0", ()),
    ("float-for-int-depth", _with(depth="13.0"), "depth", ()),
    ("bool-for-int-w0", _with(w0="true"), "w0", ()),
    ("bool-for-int-depth", _with(depth="false"), "depth", ()),
    ("bool-for-int-group-width", _with(group_width="yes"), "group_width", ()),
    ("bool-for-float-wa", _with(wa="true"), "wa", ()),
    ("list-for-int", _with(depth="[1, 2]"), "depth", ()),
    ("list-for-float", _with(wa="[36.44]"), "wa", ()),
    ("mapping-for-float", _with(wm="{a: 1}"), "wm", ()),
    ("null-for-int", _with(w0="~"), "w0", ()),
    ("int-for-str", _with(name="123"), "name", ()),
    ("list-for-str", _with(name="[a, b]"), "name", ()),
    ("string-1e3-for-float", _with(wa="1e3"), "wa", ()),
    ("date-for-float", _with(wa="2020-01-01"), "wa", ()),
    ("bad-literal-block", _with(block="q"), "block", ()),
    ("bad-literal-rounding", _with(rounding="nearest"), "rounding", ()),
    ("bad-literal-activation", _with(activation="tanh"), "activation", ()),
    (
        "string-for-bool",
        _with(downsample_in_first_stage="'sometimes'"),
        "downsample_in_first_stage",
        (),
    ),
    ("stages-not-a-list", _explicit("  3\n"), "stages", ()),
    ("stages-item-not-a-mapping", _explicit("  - [1, 2]\n"), "stages[0]", ()),
    # unknown keys
    ("unknown-key-hint", X_TEXT + "depht: 13\n", "depht", ("did you mean 'depth'",)),
    ("unknown-key-hint-2", X_TEXT + "grop_width: 8\n", "grop_width", ("'group_width'",)),
    ("unknown-key-no-hint", X_TEXT + "zzzzzz: 1\n", "zzzzzz", ("unknown",)),
    (
        "unknown-stage-key-hint",
        _explicit("  - {widht: 48, depth: 1, group_width: 16}\n"),
        "stages[0].widht",
        ("did you mean 'width'",),
    ),
    # non-finite numbers
    ("nan-wa", _with(wa=".nan"), "wa", ()),
    ("nan-wm", _with(wm=".NaN"), "wm", ()),
    ("inf-wa", _with(wa=".inf"), "wa", ()),
    ("minus-inf-wa", _with(wa="-.inf"), "wa", ()),
    ("inf-wm", _with(wm=".Inf"), "wm", ()),
    ("nan-se-ratio", _y(se_ratio=".nan"), "se_ratio", ()),
    ("inf-se-ratio", _y(se_ratio=".inf"), "se_ratio", ()),
    ("nan-bottleneck", _with(bottleneck_multiplier=".nan"), "bottleneck_multiplier", ()),
    ("inf-bottleneck", _with(bottleneck_multiplier=".inf"), "bottleneck_multiplier", ()),
    ("overflow-float-is-inf", _with(wa="1" + "0" * 400 + ".0"), "wa", ()),
    (
        "nan-stage-multiplier",
        _explicit("  - {width: 48, depth: 1, group_width: 16, bottleneck_multiplier: .nan}\n"),
        "stages[0].bottleneck_multiplier",
        (),
    ),
    # negative and zero values
    ("negative-depth", _with(depth="-3"), "depth", ()),
    ("negative-w0", _with(w0="-24"), "w0", ()),
    ("negative-wa", _with(wa="-1.5"), "wa", ()),
    ("negative-wm", _with(wm="-2.0"), "wm", ()),
    ("negative-group-width", _with(group_width="-8"), "group_width", ()),
    ("negative-q", _with(q="-8"), "q", ()),
    ("negative-stem-width", _with(stem_width="-32"), "stem_width", ()),
    ("negative-num-classes", _with(num_classes="-1"), "num_classes", ()),
    ("negative-num-channels", _with(num_channels="-3"), "num_channels", ()),
    ("negative-se-ratio", _y(se_ratio="-0.25"), "se_ratio", ()),
    ("negative-bottleneck", _with(bottleneck_multiplier="-1.0"), "bottleneck_multiplier", ()),
    ("zero-depth", _with(depth="0"), "depth", ()),
    ("zero-w0", _with(w0="0"), "w0", ()),
    ("zero-wm", _with(wm="0"), "wm", ()),
    ("zero-group-width", _with(group_width="0"), "group_width", ()),
    ("zero-q", _with(q="0"), "q", ()),
    ("zero-stem-width", _with(stem_width="0"), "stem_width", ()),
    ("zero-num-channels", _with(num_channels="0"), "num_channels", ()),
    ("zero-bottleneck", _with(bottleneck_multiplier="0"), "bottleneck_multiplier", ()),
    (
        "zero-stage-depth",
        _explicit("  - {width: 48, depth: 0, group_width: 16}\n"),
        "stages[0].depth",
        (),
    ),
    (
        "zero-stage-width",
        _explicit(
            "  - {width: 48, depth: 1, group_width: 16}\n"
            "  - {width: 0, depth: 1, group_width: 16}\n"
        ),
        "stages[1].width",
        (),
    ),
    ("empty-stages", _explicit("  []\n"), "stages", ()),
    (
        "bad-stage-stride",
        _explicit("  - {width: 48, depth: 1, group_width: 16, stride: 3}\n"),
        "stages[0].stride",
        (),
    ),
    ("empty-name", _with(name="''"), "name", ()),
    # absurdly large values
    ("huge-depth", _with(depth=str(10**9)), "depth", ()),
    ("huge-w0", _with(w0=str(10**12)), "w0", ()),
    ("huge-wa", _with(wa="1.0e+300"), "wa", ()),
    ("huge-wm", _with(wm="1.0e+300"), "wm", ()),
    ("huge-group-width", _with(group_width=str(10**12)), "group_width", ()),
    ("huge-stem-width", _with(stem_width=str(10**12)), "stem_width", ()),
    ("huge-q", _with(q=str(10**12)), "q", ()),
    ("huge-num-classes", _with(num_classes=str(10**15)), "num_classes", ()),
    ("huge-num-channels", _with(num_channels=str(10**15)), "num_channels", ()),
    ("huge-bottleneck", _with(bottleneck_multiplier="1.0e+200"), "bottleneck_multiplier", ()),
    (
        "huge-stage-depth",
        _explicit(f"  - {{width: 48, depth: {10**9}, group_width: 16}}\n"),
        "stages[0].depth",
        (),
    ),
    (
        "huge-stage-width",
        _explicit(f"  - {{width: {10**12}, depth: 1, group_width: 16}}\n"),
        "stages[0].width",
        (),
    ),
    ("five-thousand-digit-depth", _with(depth="1" * 5000), "depth", ()),
    ("long-name", _with(name="n" * 100_000), "name", ()),
    # design rules
    ("w0-not-multiple-of-q", _with(w0="20"), "w0", ("must be a positive multiple of q=8, got 20",)),
    ("w0-not-multiple-of-q4", _with(w0="10", q="4"), "w0", ("q=4", "got 10")),
    ("wm-one", _with(wm="1"), "wm", ()),
    ("wm-below-one", _with(wm="0.5"), "wm", ()),
    ("wm-exactly-1.0", _with(wm="1.0"), "wm", ()),
    ("se-ratio-one", _y(se_ratio="1"), "se_ratio", ()),
    ("se-ratio-above-one", _y(se_ratio="1.5"), "se_ratio", ()),
    ("x-with-se", _with(se_ratio="0.25"), "se_ratio", ()),
    ("y-without-se", _y(se_ratio="0"), "se_ratio", ()),
    (
        "explicit-x-with-se",
        _explicit("  - {width: 48, depth: 1, group_width: 16}\n", se_ratio=0.25),
        "se_ratio",
        (),
    ),
    (
        "explicit-bottleneck-not-divisible",
        _explicit("  - {width: 48, depth: 2, group_width: 32}\n"),
        "stages[0]",
        ("48", "32"),
    ),
    (
        "explicit-second-stage-not-divisible",
        _explicit(
            "  - {width: 48, depth: 1, group_width: 16}\n"
            "  - {width: 200, depth: 1, group_width: 16, bottleneck_multiplier: 0.25}\n"
        ),
        "stages[1]",
        ("50",),
    ),
    (
        "explicit-stride-contradiction",
        _explicit(
            "  - {width: 48, depth: 1, group_width: 16, stride: 1}\n",
            downsample_in_first_stage="true",
        ),
        "stages[0].stride",
        (),
    ),
    (
        "explicit-with-parametric-key",
        _explicit("  - {width: 48, depth: 1, group_width: 16}\n", w0=24),
        "w0",
        ("parametric or explicit (stages:), not both",),
    ),
    ("missing-required", "name: t\nblock: x\ndepth: 13\n", "w0", ("missing",)),
    ("missing-block", X_TEXT.replace("block: x\n", ""), "block", ("missing",)),
    # not a mapping of fields
    ("top-level-list", "- name: t\n- block: x\n", None, ("mapping",)),
    ("top-level-int", "42\n", None, ("mapping",)),
    ("top-level-string", "just a sentence\n", None, ("mapping",)),
    ("top-level-null", "~\n", None, ("mapping",)),
    ("document-marker-only", "---\n", None, ()),
    ("comment-only", "# nothing here\n", None, ()),
    ("non-string-key", X_TEXT + "1: 2\n", None, ()),
    ("null-key", X_TEXT + "~: 2\n", None, ()),
    ("complex-key", X_TEXT + "? [a, b]\n: 1\n", None, ()),
    ("multiple-documents", X_TEXT + "---\n" + X_TEXT, None, ()),
    # unsafe tags
    ("python-tag", "name: !!python/object/apply:os.system ['true']\nblock: x\n", None, ()),
    ("python-name-tag", X_TEXT + "q: !!python/name:os.system\n", None, ()),
    # resource exhaustion
    (
        "billion-laughs",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
        None,
        (),
    ),
    ("alias-in-a-field", "name: &n RegNet\nblock: x\ngroup_width: *n\n", None, ()),
    ("deep-flow-lists", "name: " + "[" * 100_000 + "]" * 100_000 + "\n", None, ()),
    ("deep-flow-mappings", "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", None, ()),
    ("deep-block-lists", "name:\n  " + "- " * 5000 + "1\n", None, ()),
    ("nested-900-in-a-field", _with(name="[" * 900 + "]" * 900), None, ()),
    # control characters and binary text
    ("nul-in-text", "name: t\x00\nblock: x\n", None, ()),
    ("control-chars", "name: \x01\x02\x03\nblock: x\n", None, ()),
    ("newline-in-unknown-key", X_TEXT + '"dep\\nth": 3\n', None, ()),
    ("carriage-return-in-key", X_TEXT + '"dep\\rth": 3\n', None, ()),
]


def _assert_one_line_spec_error(exc: SpecError, source: str, field: str | None, extra=()):
    msg = str(exc)
    assert type(exc) is SpecError or isinstance(exc, SpecError)
    assert msg, "empty error message"
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
    assert msg.startswith(source + ": "), f"message does not start with {source!r}: {msg!r}"
    if field is not None:
        # The field path starts one of the "; "-separated problems, followed by ":" (or by a
        # deeper part of the path: "stages[0]" is named by "stages[0].width: ...").
        body = msg[len(source) + 2 :]
        named = re.search(rf"(?:^|; ){re.escape(field)}(?=[:.\[])", body)
        assert named, f"message does not name the field {field!r}: {msg!r}"
    for part in extra:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert len(msg) < 2000, f"message is {len(msg)} characters long"


@pytest.mark.parametrize(
    ("text", "field", "extra"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_hostile_text(text, field, extra):
    assert "\n" in text  # so that load_spec reads it as text, never as a path
    with pytest.raises(SpecError) as info:
        load_spec(text)
    _assert_one_line_spec_error(info.value, "<string>", field, extra)


@pytest.mark.parametrize(
    ("text", "field", "extra"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_hostile_file(tmp_path, text, field, extra):
    f = tmp_path / "hostile spec.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(f)
    _assert_one_line_spec_error(info.value, str(f), field, extra)


def test_w0_message_exact():
    expected = "{}: w0: must be a positive multiple of q=8, got 20"
    with pytest.raises(SpecError) as info:
        load_spec(_with(w0="20"))
    assert str(info.value) == expected.format("<string>")
    with pytest.raises(SpecError) as info:
        load_spec({**X_DICT, "w0": 20})
    assert str(info.value) == expected.format("<dict>")


def test_unknown_key_hint_is_not_the_key_itself():
    # `depth` is a stage field, not a top-level field of the explicit form.
    text = _explicit("  - {width: 48, depth: 1, group_width: 16}\n", depth=3)
    with pytest.raises(SpecError) as info:
        load_spec(text)
    _assert_one_line_spec_error(info.value, "<string>", "depth", ("not both",))
    assert "did you mean 'depth'" not in str(info.value)


def test_duplicate_keys_give_a_spec_or_a_spec_error():
    # Whatever the loader does with a repeated key, the result must be a valid spec or a
    # one-line SpecError, never another exception.
    try:
        s = load_spec(X_TEXT + "depth: 14\n")
    except SpecError as exc:
        _assert_one_line_spec_error(exc, "<string>", None)
    else:
        assert s.depth in (13, 14)


# Cases given as Python mappings (the "<dict>" source).
DICT_CASES: list[tuple[str, dict, str | None]] = [
    ("nan", {**X_DICT, "wa": float("nan")}, "wa"),
    ("inf", {**X_DICT, "wm": float("inf")}, "wm"),
    ("minus-inf", {**X_DICT, "wa": float("-inf")}, "wa"),
    ("huge-float", {**X_DICT, "wa": 1e300}, "wa"),
    ("huge-int-w0", {**X_DICT, "w0": 10**12}, "w0"),
    ("huge-int-depth", {**X_DICT, "depth": 10**9}, "depth"),
    ("giant-int", {**X_DICT, "w0": 10**5000}, "w0"),
    ("giant-negative-int", {**X_DICT, "depth": -(10**5000)}, "depth"),
    ("giant-int-for-float", {**X_DICT, "wa": 10**400}, "wa"),
    ("float-for-int", {**X_DICT, "w0": 96.5}, "w0"),
    ("integral-float-for-int", {**X_DICT, "depth": 13.0}, "depth"),
    ("bool-for-int", {**X_DICT, "depth": True}, "depth"),
    ("bool-for-float", {**X_DICT, "wa": False}, "wa"),
    ("str-for-int", {**X_DICT, "depth": "13"}, "depth"),
    ("list-for-scalar", {**X_DICT, "w0": [24]}, "w0"),
    ("tuple-for-scalar", {**X_DICT, "wa": (1.0,)}, "wa"),
    ("set-for-scalar", {**X_DICT, "wm": {2.5}}, "wm"),
    ("bytes-for-str", {**X_DICT, "name": b"RegNet"}, "name"),
    ("object-for-int", {**X_DICT, "depth": object()}, "depth"),
    ("zero", {**X_DICT, "depth": 0}, "depth"),
    ("negative", {**X_DICT, "wa": -0.5}, "wa"),
    ("wm-one", {**X_DICT, "wm": 1.0}, "wm"),
    ("se-one", {**X_DICT, "block": "y", "se_ratio": 1.0}, "se_ratio"),
    ("x-with-se", {**X_DICT, "se_ratio": 0.25}, "se_ratio"),
    ("y-without-se", {**X_DICT, "block": "y", "se_ratio": 0.0}, "se_ratio"),
    ("unknown-key", {**X_DICT, "widht": 3}, "widht"),
    ("non-str-key", {**X_DICT, 3: 4}, None),
    ("tuple-key", {**X_DICT, ("a",): 4}, None),
    ("newline-in-key", {**X_DICT, "foo\nbar": 1}, None),
    ("empty-dict", {}, None),
    (
        "explicit-not-divisible",
        {"name": "e", "block": "x", "stages": [{"width": 48, "depth": 2, "group_width": 32}]},
        "stages[0]",
    ),
    (
        "explicit-stage-not-a-mapping",
        {"name": "e", "block": "x", "stages": [3]},
        "stages[0]",
    ),
    (
        "explicit-huge-stage",
        {"name": "e", "block": "x", "stages": [{"width": 48, "depth": 10**9, "group_width": 8}]},
        "stages[0].depth",
    ),
]


@pytest.mark.parametrize(
    ("data", "field"), [c[1:] for c in DICT_CASES], ids=[c[0] for c in DICT_CASES]
)
def test_hostile_dict(data, field):
    with pytest.raises(SpecError) as info:
        load_spec(data)
    _assert_one_line_spec_error(info.value, "<dict>", field)


def test_unknown_key_hint_in_dict():
    with pytest.raises(SpecError) as info:
        load_spec({**X_DICT, "grup_width": 8})
    assert "did you mean 'group_width'" in str(info.value)


# Whole files that are not specs.


def _file_case(tmp_path: Path, name: str) -> Path:
    rng = random.Random(1234)
    f = tmp_path / f"{name}.yaml"
    if name == "empty":
        f.write_bytes(b"")
    elif name == "whitespace-only":
        f.write_bytes(b"  \n\n\t \n   \r\n")
    elif name == "binary-garbage":
        f.write_bytes(bytes(rng.randrange(256) for _ in range(4096)) + b"\x00\x01\x02")
    elif name == "binary-garbage-no-nul":
        f.write_bytes(bytes(rng.randrange(1, 256) for _ in range(4096)))
    elif name == "nul-in-valid-yaml":
        f.write_bytes(X_TEXT.encode() + b"\x00\n")
    elif name == "invalid-utf8":
        f.write_bytes(X_TEXT.encode() + b"name: \xff\xfe\xc3\x28\n")
    elif name == "over-1MiB":
        pad = "# " + "x" * 1000 + "\n"
        f.write_text(X_TEXT + pad * (2**20 // len(pad) + 2), encoding="utf-8")
        assert f.stat().st_size > 2**20
    elif name == "over-1MiB-single-line":
        f.write_text(X_TEXT + "name2: " + "y" * (2**20 + 10) + "\n", encoding="utf-8")
    elif name == "huge-sparse":
        with f.open("wb") as fh:
            fh.write(X_TEXT.encode())
            fh.seek(1 << 30)
            fh.write(b"\n")
    else:  # pragma: no cover
        raise AssertionError(name)
    return f


FILE_CASES = [
    "empty",
    "whitespace-only",
    "binary-garbage",
    "binary-garbage-no-nul",
    "nul-in-valid-yaml",
    "invalid-utf8",
    "over-1MiB",
    "over-1MiB-single-line",
    "huge-sparse",
]


@pytest.mark.parametrize("name", FILE_CASES)
def test_hostile_files(tmp_path, name):
    f = _file_case(tmp_path, name)
    for src in (f, str(f)):
        with pytest.raises(SpecError) as info:
            load_spec(src)
        _assert_one_line_spec_error(info.value, str(f), None)


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "specs.yaml"
    d.mkdir()
    for src in (d, str(d)):
        with pytest.raises(SpecError) as info:
            load_spec(src)
        _assert_one_line_spec_error(info.value, str(d), None, ("directory",))


def test_missing_file(tmp_path):
    f = tmp_path / "does-not-exist.yaml"
    for src in (f, str(f)):
        with pytest.raises(SpecError) as info:
            load_spec(src)
        _assert_one_line_spec_error(info.value, str(f), None)


def test_missing_relative_file():
    with pytest.raises(SpecError) as info:
        load_spec("no-such-spec-file-here.yaml")
    _assert_one_line_spec_error(info.value, "no-such-spec-file-here.yaml", None)


def test_missing_parent_directory(tmp_path):
    f = tmp_path / "nope" / "deeper" / "x.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(f)
    _assert_one_line_spec_error(info.value, str(f), None)


def test_unreadable_file(tmp_path):
    import os

    f = tmp_path / "locked.yaml"
    f.write_text(X_TEXT, encoding="utf-8")
    f.chmod(0)
    try:
        if os.access(f, os.R_OK):  # running as root: permissions do not apply
            assert load_spec(f) == load_spec(X_TEXT)
            return
        with pytest.raises(SpecError) as info:
            load_spec(f)
        _assert_one_line_spec_error(info.value, str(f), None)
    finally:
        f.chmod(0o644)


def test_file_just_under_the_limit_loads(tmp_path):
    f = tmp_path / "padded.yaml"
    pad = "# " + "x" * 1000 + "\n"
    text = X_TEXT + pad * ((2**20 - len(X_TEXT)) // len(pad) - 1)
    f.write_text(text, encoding="utf-8")
    assert f.stat().st_size <= 2**20
    _check_x200(load_spec(f))


def test_empty_and_whitespace_text():
    for text in ("", "   ", " \n\t\n  \n"):
        with pytest.raises(SpecError) as info:
            spec_from_text(text)
        _assert_one_line_spec_error(info.value, "<string>", None)
    with pytest.raises(SpecError) as info:
        load_spec(" \n\t\n  \n")
    _assert_one_line_spec_error(info.value, "<string>", None)


def test_not_a_spec_source():
    for bad in (None, 42, 4.5, [X_DICT], b"name: t\n", object()):
        with pytest.raises(SpecError) as info:
            load_spec(bad)  # type: ignore[arg-type]
        msg = str(info.value)
        assert msg
        assert "\n" not in msg


def test_random_bytes_as_text_never_escape():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randrange(1, 300)
        text = bytes(rng.randrange(256) for _ in range(n)).decode("latin-1") + "\n"
        try:
            load_spec(text)
        except SpecError as exc:
            _assert_one_line_spec_error(exc, "<string>", None)


def test_random_mutations_of_a_valid_spec_never_escape():
    # Replace one value of a valid spec with YAML scalars and structures of every kind.
    values = [
        "0",
        "-1",
        "1.5",
        "1e3",
        ".nan",
        "-.inf",
        "true",
        "null",
        "[]",
        "{}",
        "'x'",
        "2.0e+308",
        "9" * 30,
        "0o17",
        "0x1F",
        "1_000",
        "!!binary aGk=",
        "2001-01-01",
    ]
    keys = [*X_DICT, "se_ratio", "q", "stem_width", "bottleneck_multiplier", "rounding"]
    for key in keys:
        for value in values:
            text = _with(**{key: value})
            try:
                s = load_spec(text)
            except SpecError as exc:
                _assert_one_line_spec_error(exc, "<string>", None)
            else:
                assert isinstance(s, ParametricSpec)


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
