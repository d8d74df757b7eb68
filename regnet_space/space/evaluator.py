"""One batch of draws: drawn, generated, counted and checked against the constraints.

The evaluator holds everything fixed for one sampling run (the space, its bodies, the
constraints, one drawer per sampled field) and turns the sampled values of a batch into stage
plans, counts and one verdict per design, in bulk; it also gives the records of chosen designs
and how far a rejected design is from the complexity bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from .bulk import (
    Body,
    Counts,
    RegNetParams,
    StageParams,
    Stages,
    count_stages,
    explicit_stages,
    last_exponent,
    regnet_stages,
    valid_designs,
)
from .bulk import body_of as spec_body
from .distributions import choice_indices, drawer
from .records import DesignRecord
from .space import (
    INT_FIELDS,
    REGNET_FIELDS,
    AnyNetSpace,
    Bounds,
    Constraints,
    RegNetSpace,
    Space,
    spec_fields_of,
)

# Rejection reasons, in the order they are checked (0 = meets every constraint).
REASONS = (
    "invalid",  # the one-design path would refuse it (incompatible group/bottleneck widths)
    "not_monotone",  # anynet: a non_decreasing field decreases
    "stages",  # stage count outside the range (regnet without skipping: max exponent + 1)
    "skipped_exponents",  # regnet: stage count differs from max exponent + 1
    "flops",
    "params",
    "acts",
)
_CODE = {name: i + 1 for i, name in enumerate(REASONS)}
METRICS = ("flops", "params", "acts")
# reason code -> whether it is a complexity rejection (flops, params or acts)
COMPLEXITY_CODE = np.isin(np.arange(len(REASONS) + 1), [_CODE[m] for m in METRICS])
# The sampled column holding each design's combination of choice values (an index).
CHOICE = "choices"


@dataclass(frozen=True)
class Batch:
    """A drawn batch: sampled values, plans and counts of the generated designs, verdicts."""

    sampled: dict[str, np.ndarray]  # field -> (n,) values, or (n, stages) for anynet
    index: np.ndarray  # designs that were generated (the others failed a cheap check)
    stages: Stages  # of `index`
    counts: Counts  # of `index`
    reason: np.ndarray  # (n,) int8: 0 = meets every constraint, else 1 + REASONS position


def in_bounds(bounds: Bounds | None, values: np.ndarray) -> np.ndarray:
    """Whether each value lies in the bounds (None: no bound)."""
    ok = np.ones(len(values), dtype=bool)
    if bounds is not None and bounds.lo is not None:
        ok &= values >= bounds.lo
    if bounds is not None and bounds.hi is not None:
        ok &= values <= bounds.hi
    return ok


def _reject(reason: np.ndarray, where: np.ndarray, failed: np.ndarray, name: str) -> None:
    """Mark designs `where[failed]` with `name` unless an earlier check already did."""
    if not failed.any():
        return
    hit = where[failed]
    reason[hit[reason[hit] == 0]] = _CODE[name]


def body_of(space: Space, input_size: int | None = None) -> Body:
    """What the bulk counts need from a space's fixed fields (input size: the space's)."""
    return spec_body(space.fixed_spec(), space.input_size if input_size is None else input_size)


class Evaluator:
    """Everything fixed for one sampling run: the space, body, constraints and record format
    (one fixed spec and body per combination of the space's choice values)."""

    def __init__(self, space: Space, constraints: Constraints, input_size: int) -> None:
        self.space = space
        self.constraints = constraints
        self.combos = space.combinations()
        self.fixed_specs = [space.fixed_spec(c) for c in self.combos]
        self.fixed = self.fixed_specs[0]
        self.bodies = [spec_body(f, input_size) for f in self.fixed_specs]
        self.body = self.bodies[0]
        self.fields = spec_fields_of(space)
        items = space.sample.items() if isinstance(space, RegNetSpace) else space.per_stage.items()
        self.drawers = {name: drawer(dist, name in INT_FIELDS) for name, dist in items}

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Sampled values of n designs, field by field in a fixed order, then (with choices)
        each design's combination of choice values.

        An anynet space with several stage counts draws each design's count first and
        zeroes the stages past it (so that equal designs have equal values).
        """
        if isinstance(self.space, RegNetSpace):
            out = {name: draw_values(rng, n) for name, draw_values in self.drawers.items()}
        else:
            counts = self.space.stage_counts
            s, out = max(counts), {}
            several = len(counts) > 1  # one count draws nothing for it: the stream stays
            if several:
                k = np.asarray(counts, dtype=np.int64)[choice_indices(rng, len(counts), n)]
            for name, draw_values in self.drawers.items():
                if name in self.space.shared:
                    out[name] = np.repeat(draw_values(rng, n)[:, None], s, axis=1)
                else:
                    out[name] = draw_values(rng, n * s).reshape(n, s)
            if several:
                beyond = np.arange(s) >= k[:, None]
                for values in out.values():
                    values[beyond] = 0
                out["num_stages"] = k
        if len(self.combos) > 1:  # uniform over combinations: uniform per field, independent
            out[CHOICE] = choice_indices(rng, len(self.combos), n)
        return out

    def _counted(self, stages: Stages, which: np.ndarray | None) -> tuple[Counts, np.ndarray]:
        """Counts and validity of the generated designs, each under its combination's body."""
        if which is None:
            return count_stages(stages, self.body), valid_designs(stages, self.body)
        counts = [count_stages(stages, body) for body in self.bodies]
        valid = np.choose(which, [valid_designs(stages, body) for body in self.bodies])
        picked = Counts(*(np.choose(which, [getattr(c, m) for c in counts]) for m in METRICS))
        return picked, valid

    def evaluate(self, sampled: dict[str, np.ndarray], n: int) -> Batch:
        """Generate, count and check a drawn batch."""
        c = self.constraints
        reason = np.zeros(n, dtype=np.int8)
        everyone = np.arange(n)
        if isinstance(self.space, RegNetSpace):
            params = self._regnet_params(sampled, n)
            index = everyone
            num_exponents = None
            if not c.allow_skipped_exponents and c.stages is not None:
                # Without skipping, stage count = max exponent + 1: check that before generating.
                num_exponents = last_exponent(params) + 1
                fits = in_bounds(c.stages, num_exponents)
                reason[~fits] = _CODE["stages"]  # the first check: no earlier reason to keep
                index = np.flatnonzero(fits)
                params, num_exponents = params.take(index), num_exponents[index]
            stages = regnet_stages(params, num_exponents=num_exponents)
        else:
            monotone = np.ones(n, dtype=bool)
            k = sampled.get("num_stages")
            for name in self.space.non_decreasing:
                steps = np.diff(sampled[name], axis=1) >= 0
                if k is not None:  # steps into stages past a design's count do not count
                    steps |= np.arange(1, steps.shape[1] + 1) >= k[:, None]
                monotone &= steps.all(axis=1)
            _reject(reason, everyone, ~monotone, "not_monotone")
            index = np.flatnonzero(monotone)
            stage_fields = {f: v[index] for f, v in sampled.items() if f != CHOICE}
            stages = explicit_stages(StageParams(**stage_fields))
        which = sampled[CHOICE][index] if CHOICE in sampled else None
        counts, valid = self._counted(stages, which)
        _reject(reason, index, ~valid, "invalid")
        _reject(reason, index, ~in_bounds(c.stages, stages.num_stages), "stages")
        if not c.allow_skipped_exponents:
            _reject(reason, index, stages.num_stages != stages.total_stages, "skipped_exponents")
        for metric in METRICS:
            if getattr(c, metric) is not None:
                _reject(
                    reason, index, ~in_bounds(getattr(c, metric), getattr(counts, metric)), metric
                )
        return Batch(sampled, index, stages, counts, reason)

    def params(self, sampled: dict[str, np.ndarray], n: int) -> RegNetParams | StageParams:
        """Bulk-path inputs: RegNetParams (regnet, fixed fields filled in) or StageParams."""
        if isinstance(self.space, AnyNetSpace):
            return StageParams(**{f: v for f, v in sampled.items() if f != CHOICE})
        return self._regnet_params(sampled, n)

    def _regnet_params(self, sampled: dict[str, np.ndarray], n: int) -> RegNetParams:
        fixed = self.fixed
        cols = {
            f: sampled[f] if f in sampled else np.full(n, getattr(fixed, f)) for f in REGNET_FIELDS
        }
        cols = {
            f: v.astype(np.int64 if f in INT_FIELDS else np.float64, copy=False)
            for f, v in cols.items()
        }
        return RegNetParams(**cols, q=fixed.q, rounding=fixed.rounding)

    def keys(self, batch: Batch, which: Sequence[int]) -> list[tuple[Any, ...]]:
        """What makes two draws the same design: their sampled values (designs `which`)."""
        idx = np.asarray(which, dtype=np.int64)
        if not len(idx):
            return []
        columns = [v[idx] for v in batch.sampled.values()]
        if all(c.ndim == 1 for c in columns):
            return list(zip(*(c.tolist() for c in columns), strict=True))
        rows = [c.reshape(len(idx), -1).tolist() for c in columns]
        return [tuple(x for r in rows for x in r[m]) for m in range(len(idx))]

    def records(
        self, batch: Batch, which: Sequence[int], ids: Sequence[int], names: Sequence[str]
    ) -> list[DesignRecord]:
        """The records of designs `which` of the batch (they must have been generated)."""
        if not len(which):
            return []
        idx = np.asarray(which, dtype=np.int64)
        j = np.searchsorted(batch.index, idx)
        st, counts = batch.stages, batch.counts
        lo, hi = st.offsets[j].tolist(), st.offsets[j + 1].tolist()
        flops, params, acts = (getattr(counts, m)[j].tolist() for m in METRICS)
        columns = {f: v[idx].tolist() for f, v in batch.sampled.items()}
        combos = columns.pop(CHOICE, [0] * len(idx))
        count = getattr(self.space, "stage_counts", (0,))[0]
        stage_counts = columns.get("num_stages", [count] * len(idx))
        out = []
        for m, (a, b) in enumerate(zip(lo, hi, strict=True)):
            choice = self.combos[combos[m]]
            spec: dict[str, Any] = {}
            for f in self.fields:
                if f == "name":
                    spec[f] = names[m]
                elif f in choice:
                    spec[f] = choice[f]
                elif f == "block":
                    spec[f] = self.fixed.block
                elif f == "stages":
                    spec[f] = self._stage_records(
                        columns, m, self.bodies[combos[m]], stage_counts[m]
                    )
                else:
                    spec[f] = columns[f][m] if f in columns else self.space.spec[f]
            widths = tuple(st.width[a:b].tolist())
            full = not self.bodies[combos[m]].options.bottleneck  # no groups: one, the width
            out.append(
                DesignRecord(
                    id=ids[m],
                    spec=MappingProxyType(spec),
                    input_size=self.body.input_size,
                    widths=widths,
                    depths=tuple(st.depth[a:b].tolist()),
                    group_widths=widths if full else tuple(st.group_width[a:b].tolist()),
                    flops=flops[m],
                    params=params[m],
                    acts=acts[m],
                )
            )
        return out

    def _stage_records(
        self, columns: Mapping[str, list[Any]], m: int, body: Body, num_stages: int
    ) -> tuple[Mapping[str, Any], ...]:
        """Design m's first `num_stages` stages (without group widths and multipliers for
        blocks that have no bottleneck, whose specs take none)."""
        fields = [f for f in self.drawers if body.options.bottleneck or f in ("width", "depth")]
        return tuple(
            MappingProxyType({g: columns[g][m][s] for g in fields}) for s in range(num_stages)
        )

    def may_be_nearer(self, batch: Batch, which: np.ndarray, distance: float) -> np.ndarray:
        """A mask of `which` that keeps every design nearer than `distance` (and a few more).

        Each metric's term of the distance is non-negative, so a design is nearer only if
        each count lies within the bounds widened by a factor e**distance; the factor is
        loosened by 1e-9 so that float rounding never drops a design (the exact distance
        decides after).
        """
        keep = np.ones(len(which), dtype=bool)
        if distance == math.inf:
            return keep
        grow = math.exp(distance)
        for metric in METRICS:
            bounds = getattr(self.constraints, metric)
            if bounds is None:
                continue
            x = getattr(batch.counts, metric)[which]
            if bounds.lo is not None:
                keep &= x >= max(bounds.lo, 1) / grow * (1 - 1e-9)
            if bounds.hi is not None:
                keep &= x <= max(bounds.hi, 1) * grow * (1 + 1e-9)
        return keep

    def distance(self, batch: Batch, which: np.ndarray) -> np.ndarray:
        """How far generated designs `which` are outside the complexity bounds (log scale)."""
        total = np.zeros(len(which))
        for metric in METRICS:
            bounds = getattr(self.constraints, metric)
            if bounds is None:
                continue
            x = np.maximum(getattr(batch.counts, metric)[which], 1).astype(np.float64)
            if bounds.lo is not None:
                total += np.maximum(0.0, np.log(max(bounds.lo, 1) / x))
            if bounds.hi is not None:
                total += np.maximum(0.0, np.log(x / max(bounds.hi, 1)))
        return total
