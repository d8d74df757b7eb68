"""The bulk path gives exactly what the one-design path (plan + count_plan) gives."""

from __future__ import annotations

import numpy as np
import pytest

from regnet_space.core.complexity import count_plan
from regnet_space.core.errors import PlanError, SpecError
from regnet_space.core.generator import make_plan
from regnet_space.core.spec import spec_from_dict
from regnet_space.space.bulk import (
    Body,
    RegNetParams,
    StageParams,
    count_stages,
    explicit_stages,
    last_exponent,
    regnet_stages,
)

BODY_FIELDS = ("stem_width", "num_channels", "num_classes", "downsample_in_first_stage")


def _random_params(rng: np.random.Generator, n: int, rounding: str) -> RegNetParams:
    """Parameters well beyond the shipped spaces: tiny and large slopes, bm != 1, odd groups."""
    return RegNetParams(
        depth=rng.integers(1, 41, n),
        w0=rng.integers(1, 41, n) * 8,
        wa=np.round(np.exp(rng.uniform(np.log(0.05), np.log(400), n)), 1) * (rng.random(n) > 0.02),
        wm=np.round(rng.uniform(1.02, 3.5, n), 3),
        group_width=rng.choice([1, 2, 3, 4, 8, 16, 24, 32, 40, 48, 56, 64, 112, 120, 128, 232], n),
        bottleneck_multiplier=rng.choice([0.25, 0.5, 1.0, 1.0, 1.0, 2.0, 4.0, 1.5, 0.75], n),
        q=8,
        rounding=rounding,  # type: ignore[arg-type]
    )


def _one_by_one(data: dict, input_size: int) -> tuple | None:
    """One-design path: widths, depths, group widths, flops, params, acts; None if refused."""
    try:
        p = make_plan(spec_from_dict(data), input_size)
    except (PlanError, SpecError):
        return None
    c = count_plan(p, "paper")
    total = p.generation.total_stages if p.generation else p.num_stages
    return (p.widths, p.depths, p.group_widths, c.flops, c.params, c.acts, total)


def _bulk_row(stages, counts, i: int) -> tuple | None:
    if not stages.valid[i]:
        return None
    a, b = stages.offsets[i], stages.offsets[i + 1]
    return (
        tuple(stages.width[a:b].tolist()),
        tuple(stages.depth[a:b].tolist()),
        tuple(stages.group_width[a:b].tolist()),
        int(counts.flops[i]),
        int(counts.params[i]),
        int(counts.acts[i]),
        int(stages.total_stages[i]),
    )


@pytest.mark.parametrize(
    ("seed", "rounding", "block", "body"),
    [
        (1, "pycls", "x", Body(32, 3, 1000, 0.0, True, 224)),
        (2, "pycls", "y", Body(32, 3, 1000, 0.25, True, 224)),
        (3, "torchvision", "y", Body(24, 1, 10, 0.25, False, 160)),
        (4, "torchvision", "x", Body(32, 3, 0, 0.0, True, 97)),
        (5, "pycls", "y", Body(16, 3, 10, 0.25, True, 32, stem_stride=1)),
        (6, "pycls", "x", Body(16, 3, 10, 0.0, False, 33, stem_stride=1)),
    ],
)
def test_regnet_bulk_equals_one_design_path(
    seed: int, rounding: str, block: str, body: Body
) -> None:
    """3,000 random parametric designs per case (18,000 in all), every field compared."""
    rng = np.random.default_rng(seed)
    n = 3000
    p = _random_params(rng, n, rounding)
    stages = regnet_stages(p)
    counts = count_stages(stages, body)
    fixed = {f: getattr(body, f) for f in BODY_FIELDS}
    refused = 0
    for i in range(n):
        data = {
            "name": "t",
            "block": block,
            "se_ratio": body.se_ratio,
            **fixed,
            "stem": "cifar" if body.stem_stride == 1 else "imagenet",
            "depth": int(p.depth[i]),
            "w0": int(p.w0[i]),
            "wa": float(p.wa[i]),
            "wm": float(p.wm[i]),
            "group_width": int(p.group_width[i]),
            "bottleneck_multiplier": float(p.bottleneck_multiplier[i]),
            "rounding": rounding,
        }
        expected = _one_by_one(data, body.input_size)
        refused += expected is None
        assert _bulk_row(stages, counts, i) == expected, data
    # The random designs must exercise both outcomes, and skipped exponents.
    assert 0 < refused < n // 2
    assert (stages.num_stages != stages.total_stages).any()
    assert (stages.group_width != np.repeat(p.group_width, stages.num_stages)).any()


def test_explicit_bulk_equals_one_design_path() -> None:
    """3,000 random explicit (AnyNet-like) designs with 1 to 6 stages."""
    rng = np.random.default_rng(7)
    body = Body(32, 3, 1000, 0.25, True, 224)
    refused = 0
    for s in range(1, 7):
        n = 500
        sp = StageParams(
            width=rng.integers(1, 129, (n, s)) * 8,
            depth=rng.integers(1, 17, (n, s)),
            group_width=rng.choice([1, 2, 4, 8, 16, 32, 48], (n, s)),
            bottleneck_multiplier=rng.choice([1.0, 0.5, 0.25, 2.0], (n, s)),
        )
        stages = explicit_stages(sp)
        counts = count_stages(stages, body)
        for i in range(n):
            data = {
                "name": "t",
                "block": "y",
                "stages": [
                    {
                        "width": int(sp.width[i, j]),
                        "depth": int(sp.depth[i, j]),
                        "group_width": int(sp.group_width[i, j]),
                        "bottleneck_multiplier": float(sp.bottleneck_multiplier[i, j]),
                    }
                    for j in range(s)
                ],
            }
            expected = _one_by_one(data, body.input_size)
            refused += expected is None
            assert _bulk_row(stages, counts, i) == expected, data
    assert 0 < refused < 2500


def test_edge_designs() -> None:
    """Zero slope, one block, ties of the half-even rounding, and near-flat slopes."""
    cases = [
        (1, 8, 0.0, 2.0),  # one block
        (20, 64, 0.0, 2.5),  # wa = 0: one stage
        (13, 24, 36.44, 2.49),  # RegNetX-200MF
        (16, 8, 12.0, 2.5),  # 8 * 2.5 / 8 = 2.5: a half-even tie in step 3
        (30, 16, 1e-7, 1.0000001),  # slope near float error: resolved by the generator
        (40, 8, 400.0, 1.05),  # many exponents, several sharing a quantized width
        (28, 256, 256.0, 3.0),
    ]
    p = RegNetParams(
        depth=np.array([c[0] for c in cases]),
        w0=np.array([c[1] for c in cases]),
        wa=np.array([c[2] for c in cases]),
        wm=np.array([c[3] for c in cases]),
        group_width=np.full(len(cases), 8),
        bottleneck_multiplier=np.ones(len(cases)),
        q=8,
        rounding="pycls",
    )
    body = Body(32, 3, 1000, 0.0, True, 224)
    stages = regnet_stages(p)
    counts = count_stages(stages, body)
    for i, (d, w0, wa, wm) in enumerate(cases):
        data = {"name": "t", "block": "x", "depth": d, "w0": w0, "wa": wa, "wm": wm}
        data["group_width"] = 8
        assert _bulk_row(stages, counts, i) == _one_by_one(data, 224), data
    assert last_exponent(p).tolist() == [int(t) - 1 for t in stages.total_stages]


def test_empty_batch() -> None:
    e = np.zeros(0, dtype=np.int64)
    p = RegNetParams(e, e, e * 1.0, e * 1.0, e, e * 1.0, 8, "pycls")
    counts = count_stages(regnet_stages(p), Body(32, 3, 1000, 0.0, True, 224))
    assert counts.flops.shape == (0,)


def test_overflow_is_refused() -> None:
    """Counts that could leave int64 raise instead of wrapping around."""
    sp = StageParams(
        width=np.array([[1 << 20]]),
        depth=np.array([[1000]]),
        group_width=np.array([[1 << 20]]),
        bottleneck_multiplier=np.array([[1.0]]),
    )
    with pytest.raises(PlanError, match="overflow"):
        count_stages(explicit_stages(sp), Body(32, 3, 1000, 0.0, True, 4096))
