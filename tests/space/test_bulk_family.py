"""The bulk path's closed forms equal the block definitions (plan + count_plan, one by one)
on random designs of every block kind, stem and switch combination."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regnet_space.core.complexity import count_plan
from regnet_space.core.errors import PlanError, SpecError
from regnet_space.core.generator import make_plan
from regnet_space.core.spec import BLOCK_KINDS, spec_from_dict
from regnet_space.space.bulk import (
    RegNetParams,
    StageParams,
    body_of,
    count_stages,
    explicit_stages,
    regnet_stages,
    valid_designs,
)

N = 60  # designs per drawn body


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """The fixed fields of a batch: block kind, stem, head and every switch."""
    block = draw(st.sampled_from(sorted(BLOCK_KINDS)))
    kind = BLOCK_KINDS[block]
    fields: dict[str, Any] = {
        "name": "t",
        "block": block,
        "stem": draw(st.sampled_from(["imagenet", "cifar", "resnet", "tiered"])),
        "stem_width": draw(st.sampled_from([16, 24, 32])),
        "num_classes": draw(st.sampled_from([0, 10])),
        "head_width": draw(st.sampled_from([0, 64])),
        "output_stride": draw(st.sampled_from([0, 8, 16])),
        "downsample_in_first_stage": draw(st.booleans()),
    }
    if draw(st.booleans()):
        fields |= {"norm": "group", "norm_group_size": draw(st.sampled_from([4, 8]))}
    if kind.residual:
        fields["shortcut"] = draw(st.sampled_from(["conv", "avg", "none"]))
    if kind.bottleneck:
        fields["preact"] = draw(st.booleans())
        fields["bottleneck_in"] = draw(st.booleans())
        fields["se_from"] = draw(st.sampled_from(["input", "bottleneck"]))
        if block != "x":
            fields["se_ratio"] = draw(st.sampled_from([0.25, 0.5]))
    return fields


def _one_by_one(data: dict, input_size: int) -> tuple | None:
    try:
        p = make_plan(spec_from_dict(data), input_size)
    except (PlanError, SpecError):
        return None
    c = count_plan(p, "paper")
    return (p.widths, p.depths, c.flops, c.params, c.acts)


def _bulk_row(stages: Any, counts: Any, valid: np.ndarray, i: int) -> tuple | None:
    if not valid[i]:
        return None
    a, b = stages.offsets[i], stages.offsets[i + 1]
    w, d = tuple(stages.width[a:b].tolist()), tuple(stages.depth[a:b].tolist())
    return (w, d, int(counts.flops[i]), int(counts.params[i]), int(counts.acts[i]))


SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[*HealthCheck]
)


def test_explicit_bulk_equals_the_definitions() -> None:
    seen: list[tuple[str, int]] = []
    SETTINGS(given(bodies(), st.integers(0, 2**32 - 1))(_explicit))(seen)
    _assert_covered(seen)


def test_parametric_bulk_equals_the_definitions() -> None:
    seen: list[tuple[str, int]] = []
    bottlenecks = bodies().filter(lambda f: BLOCK_KINDS[f["block"]].bottleneck)
    SETTINGS(given(bottlenecks, st.integers(0, 2**32 - 1))(_parametric))(seen)
    _assert_covered(seen)


def _assert_covered(seen: list[tuple[str, int]]) -> None:
    """Most drawn bodies had designs the one-design path resolves, of every kind drawn."""
    assert sum(n > 0 for _, n in seen) >= len(seen) // 2
    assert {k for k, n in seen if n} == {k for k, _ in seen}


def _explicit(seen: list, fields: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = int(rng.integers(1, 5))
    full = not BLOCK_KINDS[fields["block"]].bottleneck
    sp = StageParams(
        width=rng.integers(1, 13, (N, s)) * 8,
        depth=rng.integers(1, 4, (N, s)),
        group_width=rng.choice([4, 8, 16], (N, s)),
        bottleneck_multiplier=rng.choice([0.5, 1.0, 2.0, 3.0], (N, s))
        if not full
        else np.ones((N, s)),
    )
    size = int(rng.integers(17, 97))
    placeholder = {"width": 8, "depth": 1} | ({} if full else {"group_width": 8})
    body = body_of(spec_from_dict(fields | {"stages": [placeholder]}), size)
    stages = explicit_stages(sp)
    counts = count_stages(stages, body)
    valid = valid_designs(stages, body)
    seen.append((fields["block"], int(valid.sum())))
    for i in range(N):
        data = fields | {
            "stages": [
                {"width": int(sp.width[i, j]), "depth": int(sp.depth[i, j])}
                | (
                    {}
                    if full
                    else {
                        "group_width": int(sp.group_width[i, j]),
                        "bottleneck_multiplier": float(sp.bottleneck_multiplier[i, j]),
                    }
                )
                for j in range(s)
            ]
        }
        assert _bulk_row(stages, counts, valid, i) == _one_by_one(data, size), data


def _parametric(seen: list, fields: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = RegNetParams(
        depth=rng.integers(1, 20, N),
        w0=rng.integers(1, 9, N) * 8,
        wa=np.round(rng.uniform(1, 60, N), 2),
        wm=np.round(rng.uniform(1.5, 3.0, N), 2),
        group_width=rng.choice([4, 8, 16, 24], N),
        bottleneck_multiplier=rng.choice([0.5, 1.0, 2.0, 4.0], N),
        q=8,
        rounding="timm",
    )
    size = int(rng.integers(17, 97))
    fixed = fields | {"depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8}
    body = body_of(spec_from_dict(fixed | {"rounding": "timm"}), size)
    stages = regnet_stages(p)
    counts = count_stages(stages, body)
    valid = valid_designs(stages, body)
    seen.append((fields["block"], int(valid.sum())))
    for i in range(N):
        data = fields | {
            "depth": int(p.depth[i]),
            "w0": int(p.w0[i]),
            "wa": float(p.wa[i]),
            "wm": float(p.wm[i]),
            "group_width": int(p.group_width[i]),
            "bottleneck_multiplier": float(p.bottleneck_multiplier[i]),
            "rounding": "timm",
        }
        assert _bulk_row(stages, counts, valid, i) == _one_by_one(data, size), data
