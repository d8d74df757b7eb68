"""The spec's hostile corpus: texts, mappings and whole files that are not specs, each refused
with a one-line SpecError naming its source and field; random bytes and mutations never escape."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from spec_helpers import X_DICT, X_TEXT, check_x200

from regnet_space import ParametricSpec, SpecError, load_spec
from regnet_space.core.spec import spec_from_text


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
    check_x200(load_spec(f))


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
