"""Design spaces that draw the block kind and switches (choices): each design counted under
its own kind's definition, every combination validated with the space, one-line errors."""

from __future__ import annotations

from collections import Counter

import pytest

from regnet_space.core.complexity import count_plan
from regnet_space.core.generator import make_plan
from regnet_space.space.feasibility import distinct_designs
from regnet_space.space.sampling import sample
from regnet_space.space.space import SpaceError, space_from_text

REGNET = """\
space: mixed
family: regnet
input_size: 64
spec: {activation: silu}
choices:
  block: [x, y, z, v, w]
  shortcut: [conv, avg, none]
  head_width: [0, 256]
sample:
  depth: {dist: uniform, low: 8, high: 16, quantum: 1}
  w0: {dist: log_uniform, low: 16, high: 64, quantum: 8}
  wa: {dist: log_uniform, low: 8, high: 64, quantum: 0.1}
  wm: {dist: log_uniform, low: 2, high: 3, quantum: 0.001}
  group_width: {values: [8, 16]}
constraints: {stages: [3, 4]}
"""

ANYNET = """\
space: blocks
family: anynet
input_size: 32
num_stages: 3
spec: {stem: cifar, num_classes: 10}
choices:
  block: [vanilla, basic, x]
per_stage:
  depth: {dist: uniform, low: 1, high: 3, quantum: 1}
  width: {dist: log_uniform, low: 8, high: 64, quantum: 8}
  bottleneck_multiplier: {values: [1.0]}
  group_width: {values: [8]}
"""


@pytest.mark.parametrize("text", [REGNET, ANYNET], ids=["regnet", "anynet"])
def test_each_drawn_design_counts_as_its_own_kind(text: str) -> None:
    space = space_from_text(text)
    result = sample(space, 60, seed=3)
    kinds = Counter(r.spec["block"] for r in result.records)
    assert set(kinds) == set(space.choices["block"])  # every kind drawn
    for record in result.records:
        p = make_plan(record.to_spec(), record.input_size)
        c = count_plan(p)
        assert (record.flops, record.params, record.acts) == (c.flops, c.params, c.acts)
        assert record.widths == p.widths and record.group_widths == p.group_widths
    combos = len(space.combinations())
    assert distinct_designs(space) % combos == 0 and combos == {REGNET: 30, ANYNET: 3}[text]


def test_a_space_without_choices_draws_as_before() -> None:
    plain = space_from_text(
        REGNET.replace("choices:\n  block: [x, y, z, v, w]\n", "")
        .replace("  shortcut: [conv, avg, none]\n  head_width: [0, 256]\n", "")
        .replace("spec: {activation: silu}", "spec: {block: y}")
    )
    assert plain.combinations() == ({},)
    first = sample(plain, 5, seed=1)
    assert [r.spec["depth"] for r in first.records] == [
        r.spec["depth"] for r in sample(plain, 5, seed=1).records
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("block: [x, y, z, v, w]", "block: [x, vanilla]"),
            "choices (block: vanilla, shortcut: conv",
        ),
        (("block: [x, y, z, v, w]", "blok: [x]"), "choices.blok: not a field drawn from a list"),
        (("spec: {activation: silu}", "spec: {activation: silu, block: x}"), "choices.block: both"),
        (("head_width: [0, 256]", "head_width: []"), "choices.head_width: give distinct values"),
        (("shortcut: [conv, avg, none]", "shortcut: [conv, maxpool]"), "choices.shortcut"),
    ],
)
def test_bad_choices_are_one_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(SpaceError) as err:
        space_from_text(REGNET.replace(*change))
    assert message in str(err.value) and "\n" not in str(err.value)
