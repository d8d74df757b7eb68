"""Checks before the first draw: the constraints a run uses, and whether the space can meet them.

A request is refused up front when the largest designs of its ranges could overflow 64-bit
counts, when a complexity bound lies below the stem alone or above the space's largest
designs, and when the space holds fewer distinct designs than asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.spec import MAX_WIDTH
from .bulk import count_bound, fits_int64, stem_counts
from .distributions import values_of
from .evaluator import METRICS, Evaluator, in_bounds
from .space import (
    AnyNetSpace,
    Bounds,
    Constraints,
    RegNetSpace,
    Space,
    SpaceError,
    format_count,
    parse_bounds,
)


def resolve_constraints(
    space: Space, overrides: Mapping[str, Bounds | str | Any | None]
) -> Constraints:
    """The space's constraints with the given bounds in place (None keeps the space's)."""
    update = {k: parse_bounds(v) for k, v in overrides.items() if v is not None}
    c = space.constraints.model_copy(update=update)
    if (
        isinstance(space, AnyNetSpace)
        and not in_bounds(c.stages, np.array(space.stage_counts)).any()
    ):
        counts = " or ".join(map(str, space.stage_counts))
        raise SpaceError(
            f"{space.space}: every design has {counts} stages, outside stages {c.stages}"
        )
    return c


def _count_bound(space: Space, evaluator: Evaluator) -> int:
    """An upper bound of any count of the space's designs (its ranges at their top)."""
    if isinstance(space, RegNetSpace):
        top = {f: float(d.max_value) for f, d in space.sample.items()}
        fixed = evaluator.fixed
        val = {f: top.get(f, getattr(fixed, f)) for f in ("depth", "w0", "wa", "wm", "group_width")}
        bm = space.sample.bottleneck_multiplier
        bm_hi = float(bm.max_value) if bm else fixed.bottleneck_multiplier
        bm_lo = float(bm.min_value) if bm else fixed.bottleneck_multiplier
        u = val["w0"] + val["wa"] * (val["depth"] - 1)
        quantized = min(u * math.sqrt(val["wm"]) + fixed.q, MAX_WIDTH)
        width = quantized + 2 * val["group_width"] * max(1.0, bm_hi) / bm_lo + 2
        blocks = val["depth"] ** 2  # as check_overflow bounds it: depth x stages <= depth**2
    else:
        ps = dict(space.per_stage.items())
        width = float(ps["width"].max_value)
        bm_hi = float(ps["bottleneck_multiplier"].max_value)
        blocks = float(ps["depth"].max_value) * space.max_stages
    return max(
        count_bound(math.ceil(width), math.ceil(width * bm_hi) + 1, int(blocks), body)
        for body in evaluator.bodies
    )


def check_feasible(space: Space, evaluator: Evaluator, n: int) -> int:
    """Refuse ranges whose largest designs could overflow 64-bit counts, and constraints that
    no design of the space can meet (below its smallest stem or above its largest design);
    the space's distinct designs (an upper bound), at least n."""
    bound = _count_bound(space, evaluator)
    b = evaluator.body
    if not fits_int64(bound):
        raise SpaceError(
            f"{space.space}: designs at the top of these ranges could overflow 64-bit counts "
            f"at input size {b.input_size}; narrow the ranges"
        )
    # Every design has at least the stem (the fewest of any combination of choices).
    stems = [stem_counts(body) for body in evaluator.bodies]
    least = {m: min(stem[i] for stem in stems) for i, m in enumerate(METRICS)}
    c = evaluator.constraints
    for metric, low in least.items():
        bounds = getattr(c, metric)
        if bounds is None:
            continue
        if bounds.hi is not None and bounds.hi < low:
            raise SpaceError(
                f"{space.space}: no design can meet {metric} {bounds}: the stem alone has "
                f"{format_count(low)} {metric} at input size {b.input_size}"
            )
        if bounds.lo is not None and bounds.lo > bound:
            raise SpaceError(
                f"{space.space}: no design can meet {metric} {bounds}: the largest designs of "
                f"the space have at most {format_count(bound)}"
            )
    distinct = distinct_designs(space)
    if distinct < n:
        raise SpaceError(
            f"{space.space}: the space holds at most {distinct:,} distinct designs, "
            f"fewer than the {n:,} asked for"
        )
    return distinct


def distinct_designs(space: Space) -> int:
    """An upper bound of the distinct designs of a space (distinct sampled values)."""
    total = 1
    if isinstance(space, RegNetSpace):
        for _, dist in space.sample.items():
            total *= max(1, values_of(dist))
        return total * len(space.combinations())
    total = 0
    for stages in space.stage_counts:
        designs = 1
        for name, dist in space.per_stage.items():
            k = max(1, values_of(dist))
            designs *= k if name in space.shared else k**stages
        total += designs
    return total * len(space.combinations())
