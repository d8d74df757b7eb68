"""libyaml and pure-Python YAML give the same spec or the same one-line error, and same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_complexity import random_explicit_specs, random_specs
from test_spec_hostile import TEXT_CASES

from regnet_space.core.errors import SpecError
from regnet_space.core.reader import load_spec
from regnet_space.core.spec import dump_spec, spec_from_dict, spec_from_text
from regnet_space.infra import dumping, parsing

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs").glob("*/*.yaml"))

needs_libyaml = pytest.mark.skipif(
    not getattr(yaml, "__with_libyaml__", False), reason="PyYAML built without libyaml"
)


def outcome_c(text: str) -> tuple[str, Any]:
    """What the public parser answers (libyaml first, the Python loader where it must)."""
    try:
        return ("ok", parsing.parse_yaml(text, "<s>", "spec", error=SpecError))
    except SpecError as exc:
        return ("error", str(exc))


def outcome_python(text: str) -> tuple[str, Any]:
    """What the pure-Python loader alone answers (after parse_yaml's shared blank check)."""
    if not text.strip():
        return ("error", "<s>: the spec is empty")
    try:
        return ("ok", parsing._load_python(text, "<s>", SpecError))
    except SpecError as exc:
        return ("error", str(exc))


def answered_by_libyaml(text: str) -> bool:
    try:
        parsing._load_c(text)
    except parsing._Fallback:
        return False
    return True


@needs_libyaml
def test_shipped_specs_and_spaces_are_read_by_libyaml_as_by_python() -> None:
    assert len(SHIPPED) > 20
    for path in SHIPPED:
        text = path.read_text()
        assert answered_by_libyaml(text), path  # the fast path is the one taken
        assert parsing._load_c(text) == outcome_python(text)[1], path


@pytest.mark.parametrize("text", [c[1] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_hostile_corpus_same_answer_on_both_paths(text: str) -> None:
    assert outcome_c(text) == outcome_python(text)
    # and through the whole spec reader, where the corpus must fail with one line
    with pytest.raises(SpecError) as info:
        spec_from_text(text, "<s>")
    assert "\n" not in str(info.value)


@needs_libyaml
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x 1\nb: *x\n", "<s>: line 2: YAML aliases (*name) are not allowed"),
        ("a: [&x 1, *x]\n", "<s>: line 1: YAML aliases (*name) are not allowed"),
        ("a: 1\nb: 2\na: 3\n", "<s>: line 3: duplicate key 'a'"),
        ("a:\n  b: 1\n  b: 2\n", "<s>: line 3: duplicate key 'b'"),
        ("a: " + "[" * 101 + "]" * 101 + "\n", "<s>: YAML nested too deeply"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "<s>: YAML nested too deeply"),
        ("a: b: c\n", "<s>: line 1: invalid YAML: mapping values are not allowed here"),
        ("a: !!int ''\n", "<s>: line 1: '' is not a valid int"),
        ("a: !!bool x\n", "<s>: line 1: 'x' is not a valid bool"),
        ("a: !!timestamp x\n", "<s>: line 1: 'x' is not a valid timestamp"),
        ("[1, 2\n", "<s>: line 2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
)
def test_every_limit_holds_with_the_python_loader_s_message(text: str, message: str) -> None:
    assert outcome_c(text) == outcome_python(text) == ("error", message)


def test_depth_limit_is_exact() -> None:
    deep_ok = "[" * parsing.MAX_DEPTH + "]" * parsing.MAX_DEPTH
    too_deep = "[" + deep_ok + "]"
    assert outcome_c(deep_ok)[0] == outcome_python(deep_ok)[0] == "ok"
    expected = ("error", "<s>: YAML nested too deeply")
    assert outcome_c(too_deep) == outcome_python(too_deep) == expected


@needs_libyaml
def test_plain_data_by_libyaml_and_the_rest_by_python_read_alike() -> None:
    for text in ("a: &x 1\nb: 2\n", "a: [1, {b: [2, 3]}]\n", "1: a\n2.5: b\nnull: c\nfalse: d\n"):
        assert answered_by_libyaml(text)
        assert outcome_c(text) == outcome_python(text)
    for text in ("a: 1\n<<: {b: 2}\n", "=: 1\n", "a: 2020-01-01\n", "1: a\n01: b\n"):
        assert not answered_by_libyaml(text)  # left to the Python loader
        assert outcome_c(text) == outcome_python(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(random_specs(), random_explicit_specs()))
def test_random_specs_same_spec_on_both_paths_and_same_dump_bytes(data: dict) -> None:
    try:
        spec = spec_from_dict({"name": "random", **data})
    except SpecError:
        return
    text = dump_spec(spec)
    written = yaml.safe_load(text)  # dump_spec leaves defaults out (stem, input_size 224)
    assert text == yaml.safe_dump(written, sort_keys=False)  # the pure-Python dumper's bytes
    assert outcome_c(text) == outcome_python(text) == ("ok", written)
    assert load_spec(text) == spec


YAML_PIECES = [
    *"ab: -[]{},?'\"&*#|>%@`\n\\~01.e+_x\r!\t",
    "\n  ", ": ", "- ", "\r\n", "\u00e9", "0x", "1e3", "<<: ", "---\n", "...\n", "null",
    "true", "%YAML 1.2\n", "\\x41", "\\N", "''", "? ", "|-\n  ", ">+\n ", "&a ", "*a",
    "-.inf", "0o7", "1_000", "2020-01-01", "\ufeff", "\x85", "\u2028", "!!int ", "!!str ",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(YAML_PIECES), min_size=1, max_size=30).map("".join))
def test_random_yaml_text_same_answer_on_both_paths(text: str) -> None:
    assert outcome_c(text) == outcome_python(text)


names = st.text(st.sampled_from("abAZ09_.+-/ :#'\"\\é\n\t{}[]&*!?"), min_size=1, max_size=90)


@settings(max_examples=200, deadline=None)
@given(names, st.lists(st.one_of(names, st.integers(), st.floats()), max_size=4))
def test_dump_yaml_writes_the_python_dumper_s_bytes(name: str, values: list) -> None:
    data = {name: values, "n": {name: 1.5}}
    assert dumping.dump_yaml(data) == yaml.safe_dump(data, sort_keys=False)


flat_values = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.sampled_from("aZ09_.+-: #'yYnN"), max_size=12),
    st.sampled_from(["yes", "No", "on", "OFF", "null", "true", "1e3", "0x1f", "1_0", "12:30"]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.sampled_from("abyn_-.1 :"), max_size=8), flat_values))
def test_flat_mappings_written_directly_are_the_python_dumper_s_bytes(data: dict) -> None:
    assert dumping.dump_yaml(data) == yaml.safe_dump(data, sort_keys=False)


def test_parametric_specs_are_written_directly_with_the_same_bytes() -> None:
    from regnet_space.space.sampling import sample

    records = sample(ROOT / "specs" / "spaces" / "regnety.yaml", 20, seed=3).records
    specs = [load_spec(ROOT / "specs" / "y040.yaml"), *(r.to_spec() for r in records)]
    for spec in specs:
        data = spec.model_dump(mode="json", exclude_none=True)
        assert dumping._dump_flat(data) == yaml.safe_dump(data, sort_keys=False)
        assert load_spec(dump_spec(spec)) == spec
