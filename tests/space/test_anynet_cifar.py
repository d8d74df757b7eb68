"""The AnyNetX-CIFAR A-E spaces (the paper's progression at the CIFAR stem, 2 or 3 stages):
each constraint holds in every sampled design and is not vacuous one step before; stage
counts drawn per design; counts exact."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from regnet_space import count, load_spec
from regnet_space.space.feasibility import distinct_designs
from regnet_space.space.sampling import sample
from regnet_space.space.space import AnyNetSpace, SpaceError, load_space, space_from_text

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "specs" / "spaces"
SHARED = {
    "a": (),
    "b": ("bottleneck_multiplier",),
    "c": ("bottleneck_multiplier", "group_width"),
    "d": ("bottleneck_multiplier", "group_width"),
    "e": ("bottleneck_multiplier", "group_width"),
}
NON_DECREASING = {"a": (), "b": (), "c": (), "d": ("width",), "e": ("width", "depth")}
N = 300


def _stages(key: str, **bounds: str) -> list[list[dict]]:
    result = sample(SPACES / f"anynetx-cifar-{key}.yaml", N, seed=7, **bounds)
    return [[dict(s) for s in r.spec["stages"]] for r in result.records]


def _shared(design: list[dict], field: str) -> bool:
    return len({s[field] for s in design}) == 1


def _rising(design: list[dict], field: str) -> bool:
    values = [s[field] for s in design]
    return all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("key", "abcde")
def test_space_files(key: str) -> None:
    space = load_space(SPACES / f"anynetx-cifar-{key}.yaml")
    assert isinstance(space, AnyNetSpace) and space.space == f"AnyNetX-CIFAR-{key.upper()}"
    assert space.input_size == 32 and space.stage_counts == (2, 3)
    fixed = space.fixed_spec()
    assert (fixed.stem, fixed.stem_width, fixed.num_classes, fixed.block) == ("cifar", 16, 10, "x")
    assert space.shared == SHARED[key] and space.non_decreasing == NON_DECREASING[key]
    ps = dict(space.per_stage.items())
    assert (ps["depth"].low, ps["depth"].high, ps["width"].low, ps["width"].high) == (
        1,
        16,
        8,
        1024,
    )
    assert ps["bottleneck_multiplier"].values == (1.0, 0.5, 0.25)
    assert (ps["group_width"].low, ps["group_width"].high) == (1, 32)


@pytest.mark.parametrize("key", "abcde")
def test_sampled_designs_obey_their_space(key: str) -> None:
    designs = _stages(key)
    assert {len(d) for d in designs} == {2, 3}  # each design draws its stage count
    for field in SHARED[key]:
        assert all(_shared(d, field) for d in designs), field
    for field in NON_DECREASING[key]:
        assert all(_rising(d, field) for d in designs), field


def test_each_step_adds_a_constraint_the_previous_space_breaks() -> None:
    a, b, c, d = (_stages(k) for k in "abcd")
    assert not all(_shared(x, "bottleneck_multiplier") for x in a)  # B's rule is new
    assert not all(_shared(x, "group_width") for x in b)  # C's
    assert not all(_rising(x, "width") for x in c)  # D's
    assert not all(_rising(x, "depth") for x in d)  # E's


def test_counts_are_exact_and_the_cifar_band_is_reachable() -> None:
    result = sample(SPACES / "anynetx-cifar-e.yaml", 32, seed=0, flops="120M:130M",
                    params="0:2M", acts="0:1M")  # fmt: skip
    assert len(result.records) == 32
    mixed = sample(SPACES / "anynetx-cifar-a.yaml", 40, seed=1).records
    assert {len(r.widths) for r in mixed} == {2, 3}
    for r in (*result.records[:8], *mixed):
        c = count(load_spec(r.to_dict_spec()), r.input_size)
        assert (r.flops, r.params, r.acts) == (c.flops, c.params, c.acts)
        assert 120e6 <= r.flops <= 130e6 or r in mixed


def test_stage_count_choice_against_one_count() -> None:
    text = (SPACES / "anynetx-cifar-c.yaml").read_text()
    fixed = space_from_text(text.replace("num_stages: {values: [2, 3]}", "num_stages: 3"))
    single = space_from_text(
        text.replace("num_stages: {values: [2, 3]}", "num_stages: {values: [3]}")
    )
    # A list of one count draws exactly as that count does (nothing is drawn for it).
    assert sample(single, 20, seed=3).records == sample(fixed, 20, seed=3).records
    both = load_space(SPACES / "anynetx-cifar-c.yaml")
    two = space_from_text(text.replace("num_stages: {values: [2, 3]}", "num_stages: 2"))
    assert distinct_designs(both) == distinct_designs(two) + distinct_designs(fixed)
    only3 = sample(both, 20, seed=3, stages="3:3").records
    assert {len(r.widths) for r in only3} == {3}
    with pytest.raises(SpaceError, match="every design has 2 or 3 stages, outside stages 4:5"):
        sample(both, 2, stages="4:5")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{values: [2, 2]}", "listed once"),
        ("{values: [0, 2]}", "greater than or equal to 1"),
        ("[2, 3]", "expected a stage count or {values: [counts]}"),
        ("{vals: [2]}", "unknown field"),
    ],
)
def test_bad_stage_counts(value: str, message: str) -> None:
    text = (SPACES / "anynetx-cifar-a.yaml").read_text()
    with pytest.raises(SpaceError, match=re.escape(message)):
        space_from_text(text.replace("{values: [2, 3]}", value))


def test_non_decreasing_looks_only_at_a_designs_own_stages() -> None:
    # A 2-stage design of E is judged on its two stages: the zeroed third never breaks a rule.
    designs = _stages("e", flops="1M:60M")
    two = [d for d in designs if len(d) == 2]
    assert two and all(np.all(np.diff([s["width"] for s in d]) >= 0) for d in two)


def test_analysis_of_mixed_stage_counts_keeps_shared_fields_as_one() -> None:
    # C shares one group width: g1..g3 become one column even where 2-stage designs lack g3.
    from regnet_space.analysis.results import study_from_records

    records = sample(SPACES / "anynetx-cifar-c.yaml", 30, seed=2).records
    rows = [r.to_dict() | {"error": float(i)} for i, r in enumerate(records)]
    (space,) = study_from_records({"C": rows}).spaces
    assert {len(r["stages"]) for r in rows} == {2, 3}
    assert "group_width" in space.parameters and "g1" not in space.parameters
    assert "bottleneck_multiplier" in space.parameters and "w3" in space.parameters
    assert space.parameters["num_stages"] == tuple(float(len(r["stages"])) for r in rows)
