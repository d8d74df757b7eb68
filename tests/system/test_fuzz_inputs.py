"""Fuzzed specs, spaces and results files: only the package's own one-line errors, and round trips.

Hypothesis draws hostile values (huge and non-finite numbers, wrong types, nesting, control
characters) into the fields each format has; every step a user can reach (load, plan, count,
dump, reload, report, resolved spec, sample, analyze) must either work or raise a
RegNetSpaceError whose message is one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from regnet_space.analysis.results import load_study, read_records
from regnet_space.analysis.stats import analyze
from regnet_space.cli.render import render_report, summarize
from regnet_space.core.complexity import count
from regnet_space.core.errors import PlanError
from regnet_space.core.generator import make_plan, resolved_spec_text
from regnet_space.core.spec import ParametricSpec, dump_spec, spec_from_dict, spec_from_text
from regnet_space.infra.errors import RegNetSpaceError
from regnet_space.space.sampling import sample
from regnet_space.space.space import load_space

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_HOSTILE_NUMBERS = st.sampled_from(
    [
        *(0, -1, 1, 2, 3, 7, 8, 16, 24, 64, 1000, 1 << 20, (1 << 20) + 8, 2**63, -(2**63)),
        *(10**400, 0.0, 0.5, 1.0, 1.5, 2.5, 1e-300, 1e300, float("inf"), float("nan"), -0.25),
    ]
)
_HOSTILE_TEXT = st.sampled_from(
    ["", "x", "y", "relu", "pycls", "torchvision", "\x1b[2J", "$\\foo$", "=1+2", "a" * 300, "é"]
)
_SCALAR = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _HOSTILE_NUMBERS,
    _HOSTILE_TEXT,
    st.booleans(),
    st.none(),
)
_VALUE = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3), max_leaves=6)

_SPEC_FIELDS = [
    "name",
    "block",
    "se_ratio",
    "stem_width",
    "num_channels",
    "num_classes",
    "activation",
    "downsample_in_first_stage",
    "depth",
    "w0",
    "wa",
    "wm",
    "group_width",
    "bottleneck_multiplier",
    "q",
    "rounding",
]
_STAGE_FIELDS = ["width", "depth", "group_width", "bottleneck_multiplier", "stride"]


def _plausible(field: str) -> st.SearchStrategy[Any]:
    """Values that often pass validation, so the later steps get exercised too."""
    table: dict[str, st.SearchStrategy[Any]] = {
        "name": st.sampled_from(["m", "\x1b]0;title\x07", "a:b"]),
        "block": st.sampled_from(["x", "y"]),
        "se_ratio": st.sampled_from([0.0, 0.25]),
        "stem_width": st.sampled_from([8, 16, 32]),
        "num_classes": st.sampled_from([0, 10, 1000]),
        "depth": st.integers(1, 30),
        "w0": st.sampled_from([8, 16, 24, 48, 96]),
        "wa": st.floats(0, 300),
        "wm": st.floats(1.01, 4),
        "group_width": st.sampled_from([1, 8, 16, 24]),
        "bottleneck_multiplier": st.sampled_from([0.25, 0.5, 1.0, 4.0]),
        "q": st.sampled_from([4, 8]),
        "rounding": st.sampled_from(["pycls", "torchvision"]),
        "width": st.sampled_from([8, 16, 48, 96, 1 << 20]),
        "stride": st.sampled_from([1, 2]),
        "downsample_in_first_stage": st.booleans(),
    }
    return table.get(field, _VALUE)


def _field_value(field: str) -> st.SearchStrategy[Any]:
    return st.one_of(_plausible(field), _plausible(field), _VALUE)


@st.composite
def spec_dicts(draw: st.DrawFn) -> dict[str, Any]:
    data = {
        f: draw(_field_value(f))
        for f in _SPEC_FIELDS
        if draw(st.booleans()) or f in ("name", "block")
    }
    if draw(st.booleans()):
        for f in ("depth", "w0", "wa", "wm", "group_width", "q", "rounding"):
            data.pop(f, None)
        stages = draw(
            st.lists(
                st.fixed_dictionaries(
                    {f: _field_value(f) for f in ("width", "depth", "group_width")},
                    optional={f: _field_value(f) for f in ("bottleneck_multiplier", "stride")},
                ),
                min_size=0,
                max_size=5,
            )
        )
        data["stages"] = draw(st.one_of(st.just(stages), _VALUE))
    if draw(st.integers(0, 9)) == 0:
        data[draw(_HOSTILE_TEXT)] = draw(_VALUE)
    return data


def _one_line(exc: RegNetSpaceError) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) < 2000, text


def _same_design(a: Any, b: Any) -> None:
    pa, pb = make_plan(a), make_plan(b)
    assert pa.stages == pb.stages and pa.stem_width == pb.stem_width
    assert count(pa) == count(pb)


@SETTINGS
@given(spec_dicts())
# an explicit spec whose first stage has stride 1: its resolved form must read back
@example(
    {
        "name": "s1",
        "block": "x",
        "stages": [{"width": 32, "depth": 1, "group_width": 8, "stride": 1}],
    }
)
# more stages than a spec may list once resolved; a width rounded past 2**20
@example({"name": "m", "block": "x", "depth": 70, "w0": 8, "wa": 8.0, "wm": 1.01, "group_width": 8})
@example(
    {"name": "m", "block": "x", "depth": 1, "w0": 1048568, "wa": 0.0, "wm": 2.0, "group_width": 88}
)
def test_fuzzed_spec_dicts_round_trip_or_fail_in_one_line(data: dict[str, Any]) -> None:
    try:
        spec = spec_from_dict(data, "fuzz")
    except RegNetSpaceError as exc:
        _one_line(exc)
        return
    # Every valid spec dumps to YAML that reads back equal.
    again = spec_from_text(dump_spec(spec), "dumped")
    assert again == spec
    try:
        p = make_plan(spec)
    except RegNetSpaceError as exc:
        _one_line(exc)
        return
    count(p)
    render_report([summarize(spec, "fuzz", 224, "paper")], "csv")
    try:
        text = resolved_spec_text(spec)
    except PlanError as exc:  # only a parametric spec resolving to more stages than allowed
        assert isinstance(spec, ParametricSpec) and "resolved" in str(exc), exc
        _one_line(exc)
        return
    resolved = spec_from_text(text, "resolved")  # what build --save writes reads back
    _same_design(resolved, spec)
    assert p.num_stages == len(resolved.stages)


@SETTINGS
@given(spec_dicts())
def test_fuzzed_spec_yaml_text_fails_in_one_line(data: dict[str, Any]) -> None:
    try:
        text = yaml.safe_dump(data)
    except (yaml.YAMLError, ValueError, OverflowError):
        return  # not representable as YAML: nothing a user could write
    try:
        spec = spec_from_text(text, "fuzz.yaml")
        make_plan(spec)
    except RegNetSpaceError as exc:
        _one_line(exc)


_DIST = st.one_of(
    st.fixed_dictionaries(
        {
            "dist": st.sampled_from(
                ["uniform", "log_uniform", "power2_uniform", "power2_or_log_uniform", "other"]
            ),
            "low": st.one_of(_HOSTILE_NUMBERS, st.sampled_from([1, 2, 8, 16])),
            "high": st.one_of(_HOSTILE_NUMBERS, st.sampled_from([4, 8, 16, 32, 256])),
        },
        optional={"quantum": st.one_of(_HOSTILE_NUMBERS, st.sampled_from([1, 8, 0.1]))},
    ),
    st.fixed_dictionaries({"values": st.lists(_SCALAR, max_size=4)}),
    _VALUE,
)


@st.composite
def space_dicts(draw: st.DrawFn) -> dict[str, Any]:
    family = draw(st.sampled_from(["regnet", "anynet", "other"]))
    data: dict[str, Any] = {
        "space": draw(st.sampled_from(["s", "\x1b[31mred", "a" * 250])),
        "family": family,
    }
    if family == "regnet":
        data["sample"] = {
            f: draw(_DIST)
            for f in ("depth", "w0", "wa", "wm", "group_width")
            if draw(st.integers(0, 5))
        }
        data["spec"] = {"block": draw(st.sampled_from(["x", "y", 3]))}
    else:
        data["num_stages"] = draw(st.one_of(st.integers(0, 5), _SCALAR))
        data["per_stage"] = {
            f: draw(_DIST) for f in ("width", "depth", "group_width") if draw(st.integers(0, 5))
        }
        data["spec"] = {"block": "x"}
    if draw(st.booleans()):
        data["constraints"] = {
            k: draw(st.one_of(st.just([1, 10**12]), _VALUE, st.text(max_size=8)))
            for k in ("flops", "params", "acts", "stages")
            if draw(st.booleans())
        }
    if draw(st.booleans()):
        data["input_size"] = draw(_field_value("depth"))
    return data


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(space_dicts(), st.integers(1, 5))
# a nested constraint bound; a 5000-digit number; two designs, five asked for
@example(
    {
        "space": "s",
        "family": "regnet",
        "sample": {},
        "spec": {"block": "x"},
        "constraints": {"flops": [[1, 2], 3]},
    },
    1,
)
@example(
    {
        "space": "s",
        "family": "regnet",
        "sample": {},
        "spec": {"block": "x"},
        "constraints": {"flops": "1:" + "9" * 5000},
    },
    1,
)
@example(
    {
        "space": "s",
        "family": "regnet",
        "spec": {"block": "x"},
        "sample": {
            "depth": {"values": [12, 13]},
            "w0": {"values": [24]},
            "wa": {"values": [36.4]},
            "wm": {"values": [2.5]},
            "group_width": {"values": [8]},
        },
    },
    5,
)
def test_fuzzed_spaces_load_and_sample_or_fail_in_one_line(data: dict[str, Any], n: int) -> None:
    try:
        space = load_space(data)
        result = sample(space, n, seed=0, max_tries=5000)
    except RegNetSpaceError as exc:
        _one_line(exc)
        return
    assert len(result.records) == n
    for rec in result.records:
        rec.to_spec()


_CELL = st.one_of(
    _SCALAR.map(lambda v: json.dumps(v) if not isinstance(v, str) else v),
    st.sampled_from(["1e400", "9" * 5000, "NaN", "-Infinity", "[[[[1]]]]", "{", "=cmd|' /C'!A0"]),
    st.text(max_size=6),
)
_COLUMNS = ["id", "name", "error", "depth", "w0", "wa", "wm", "group_width", "flops", "space"]


@st.composite
def results_texts(draw: st.DrawFn) -> tuple[str, str]:
    columns = draw(st.lists(st.sampled_from(_COLUMNS), min_size=1, max_size=8, unique=True))
    rows = draw(
        st.lists(
            st.fixed_dictionaries({c: st.one_of(_field_value(c), _SCALAR, _CELL) for c in columns}),
            min_size=0,
            max_size=6,
        )
    )
    kind = draw(st.sampled_from(["jsonl", "csv", "json"]))
    if kind == "csv":
        lines = [",".join(columns)]
        lines += [
            ",".join(str(r[c]).replace(",", ";").replace("\n", " ") for c in columns) for r in rows
        ]
        return "csv", "\n".join(lines) + "\n"
    try:
        if kind == "jsonl":
            return "jsonl", "".join(json.dumps(r) + "\n" for r in rows)
        return "json", json.dumps(rows)
    except ValueError:
        return "json", "[" * 5000


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(results_texts())
@example(("jsonl", '{"id": 0, "error": 1, "depth": ' + "9" * 5000 + "}\n"))
@example(("json", "[" * 5000 + "]" * 5000))
@example(("jsonl", '{"id": 0, "error": Infinity, "depth": 12}\n'))
@example(
    ("csv", "id,error,depth,w0,wa,wm,group_width\n0,1,12,24,36.4,2.5,8\n0,2,12,24,36.4,2.5,8\n")
)
def test_fuzzed_results_files_analyze_or_fail_in_one_line(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    suffix, text = case
    path = tmp_path / f"r.{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        read_records(path)
        study = load_study([path], metric="error")
        analyze(study, resamples=20)
    except RegNetSpaceError as exc:
        _one_line(exc)
