"""The counter's stage cache: counts met again are the counts computed afresh, under every
convention and switch, and a definition registered anew is counted anew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import regnet_space as rs
from regnet_space.core import blocks, complexity
from regnet_space.core.complexity import count_plan
from regnet_space.core.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _uncached(p: Any, convention: str) -> Any:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(complexity, "_stage_counts", complexity._stage_counts.__wrapped__)
        return count_plan(p, convention)


@settings(max_examples=60, deadline=None)
@given(
    block=st.sampled_from(["x", "y", "z", "v", "w"]),
    w0=st.integers(2, 12).map(lambda k: 8 * k),
    wa=st.floats(8, 40).map(lambda v: round(v, 1)),
    shortcut=st.sampled_from([None, "conv", "avg"]),
    convention=st.sampled_from(["paper", "fvcore", "torchvision"]),
    size=st.sampled_from([32, 224]),
)
def test_a_count_met_again_is_the_count_computed_afresh(
    block: str, w0: int, wa: float, shortcut: str | None, convention: str, size: int
) -> None:
    data = {"name": "c", "block": block, "depth": 8, "w0": w0, "wa": wa, "wm": 2.0}
    data |= {"group_width": 8} | ({"shortcut": shortcut} if shortcut else {})
    p = rs.plan(spec_from_dict(data), size)
    first = count_plan(p, convention)  # type: ignore[arg-type]
    again = count_plan(rs.plan(spec_from_dict(data), size), convention)  # type: ignore[arg-type]
    assert first == again == _uncached(p, convention)


def test_a_definition_registered_anew_is_counted_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    y040 = rs.load_spec(ROOT / "specs" / "y040.yaml")
    p = rs.plan(y040)
    x = rs.plan(spec_from_dict(y040.model_dump() | {"block": "x", "se_ratio": 0.0}))
    with_se = count_plan(p)
    assert with_se.flops > count_plan(x).flops

    def no_se(b: Any, o: Any) -> blocks.BlockLayers:
        layers = blocks.bottleneck(b, o)
        kept = tuple(u for u in layers.layer if not isinstance(u, blocks.SqueezeExcite))
        return blocks.BlockLayers(layers.preact, kept, layers.shortcut, layers.act_out)

    monkeypatch.setitem(blocks.DEFINITIONS, "y", no_se)
    assert count_plan(p).stages == count_plan(x).stages
    monkeypatch.undo()
    assert count_plan(p) == with_se
