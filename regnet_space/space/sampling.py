"""Design-space sampling: draw designs from a space and keep those that meet the constraints.

Plain rejection sampling, so accepted designs follow the space's own distribution restricted
to the constraints (what design-space statistics need). Designs are drawn in batches of a
fixed size from numpy's PCG64 generator, generated and counted by the bulk path, and accepted
in draw order; the output depends only on the space, the seed and the options.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.generator import MAX_INPUT_SIZE
from ..core.spec import MAX_WIDTH, Spec, spec_from_dict
from ..infra.errors import RegNetSpaceError
from ..infra.text import csv_cell
from .bulk import (
    Body,
    Counts,
    RegNetParams,
    StageParams,
    Stages,
    count_bound,
    count_stages,
    explicit_stages,
    fits_int64,
    last_exponent,
    regnet_stages,
    stem_counts,
    valid_designs,
)
from .bulk import body_of as spec_body
from .space import (
    INT_FIELDS,
    REGNET_FIELDS,
    AnyNetSpace,
    Bounds,
    Constraints,
    QuantizedDist,
    RegNetSpace,
    Space,
    SpaceError,
    ValuesDist,
    format_count,
    load_space,
    parse_bounds,
    spec_fields_of,
)

BATCH = 4096  # draws per batch: fixed, so that the accepted designs never depend on timing
CHUNK = 4  # batches generated and counted by one call at most (results do not depend on it)
MIN_MAX_TRIES = 10_000_000  # default tries: max(this, TRIES_PER_DESIGN * n)
TRIES_PER_DESIGN = 50_000
MAX_DESIGNS = 1_000_000
# Repeats per distinct design found after which the space is taken as exhausted.
EXHAUSTED = 30
SMALL_SPACE = 100_000  # spaces with at most this many designs: every drawn design is tracked
CLOSEST = 5  # designs kept to show when the constraints cannot be met

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
_METRICS = ("flops", "params", "acts")
# reason code -> whether it is a complexity rejection (flops, params or acts)
_COMPLEXITY_CODE = np.isin(np.arange(len(REASONS) + 1), [_CODE[m] for m in _METRICS])


class SampleError(RegNetSpaceError):
    """Fewer designs than asked met the constraints within the tries allowed."""

    def __init__(self, message: str, result: SampleResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class DesignRecord:
    """One sampled design: its spec fields, stage plan and paper-convention counts."""

    id: int  # sample id: position among the accepted designs (-1 for a rejected one)
    spec: Mapping[str, Any]  # spec fields; a valid spec of this design
    input_size: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]
    flops: int
    params: int
    acts: int

    def to_dict(self) -> dict[str, Any]:
        """The output record: id, spec fields, input size, stage plan and counts."""
        return {
            "id": self.id,
            **{k: (list(map(dict, v)) if k == "stages" else v) for k, v in self.spec.items()},
            "input_size": self.input_size,
            "widths": list(self.widths),
            "depths": list(self.depths),
            "group_widths": list(self.group_widths),
            "flops": self.flops,
            "params": self.params,
            "acts": self.acts,
        }

    def to_spec(self) -> Spec:
        """The design as a validated spec."""
        return spec_from_dict(self.to_dict_spec(), f"design {self.id}")

    def to_dict_spec(self) -> dict[str, Any]:
        """Only the spec fields, as a plain mapping."""
        return {k: v for k, v in self.to_dict().items() if k in self.spec}


@dataclass(frozen=True)
class SampleProgress:
    """Where a running sample is: tries so far and designs accepted."""

    tries: int
    accepted: int
    requested: int
    max_tries: int
    elapsed: float


@dataclass(frozen=True)
class SampleResult:
    """Accepted designs in order, with how many tries it took and why the others were not."""

    space: str
    seed: int
    requested: int
    input_size: int
    constraints: Constraints
    records: tuple[DesignRecord, ...]
    tries: int
    rejected: Mapping[str, int]  # reason -> count, reasons of REASONS and "duplicate"
    closest: tuple[DesignRecord, ...]  # rejected for complexity only, nearest the bounds first

    @property
    def accepted(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        return len(self.records) == self.requested

    @property
    def acceptance_rate(self) -> float:
        return len(self.records) / self.tries if self.tries else 0.0

    def __len__(self) -> int:
        """The number of accepted designs."""
        return len(self.records)

    def __iter__(self) -> Iterator[DesignRecord]:
        """The accepted designs, in order."""
        return iter(self.records)

    def __repr__(self) -> str:
        # The default repr lists every record: thousands of lines in a notebook.
        return (
            f"SampleResult(space={self.space!r}, {len(self.records):,}/{self.requested:,} "
            f"designs, seed={self.seed}, input_size={self.input_size}, {self.tries:,} tries)"
        )


# ---------------------------------------------------------------------------------------------
# Drawing: one distribution -> an array of values (int64 for integer fields, else float64)


def _fraction(x: int | float) -> Fraction:
    return Fraction(Decimal(str(x)))


@dataclass(frozen=True)
class _Grid:
    """Multiples k * q of a quantum q = num / den for k in [lo, hi] (exact, from decimals)."""

    num: int
    den: int
    lo: int
    hi: int
    integer: bool

    @classmethod
    def of(cls, low: Fraction, high: Fraction, q: Fraction, integer: bool) -> _Grid:
        return cls(q.numerator, q.denominator, math.ceil(low / q), math.floor(high / q), integer)

    def values(self, k: np.ndarray) -> np.ndarray:
        """k * q; a float is the double nearest the decimal, so it reads back as itself."""
        if self.integer:
            step = self.num // self.den
            return k if step == 1 else k * step
        return (k if self.num == 1 else k * self.num) / self.den


@dataclass(frozen=True)
class _LogUniform:
    """pycls's log_uniform: a log-uniform draw in (low - min(q, low/2), high], rounded up to q."""

    grid: _Grid
    log_high: float
    log_span: float

    @classmethod
    def of(cls, low: Fraction, high: Fraction, q: Fraction, integer: bool) -> _LogUniform:
        floor = float(low - min(q, low / 2))
        top = math.log(float(high))
        return cls(_Grid.of(low, high, q, integer), top, top - math.log(floor))

    def multiples(self, rng: np.random.Generator, n: int) -> np.ndarray:
        g = self.grid
        # exp(log_high - u * log_span) * den / num, rounded up: in place, operation for
        # operation, so the values are those of the plain expression.
        f = rng.random(n)
        f *= self.log_span
        np.subtract(self.log_high, f, out=f)
        np.exp(f, out=f)
        if g.den != 1:  # x * 1 and x / 1 are x exactly: skipped
            f *= g.den
        if g.num != 1:
            f /= g.num
        k = np.ceil(f, out=f).astype(np.int64)
        # Float rounding at the very ends must not step outside [low, high].
        np.maximum(k, g.lo, out=k)
        return np.minimum(k, g.hi, out=k)


Drawer = Callable[[np.random.Generator, int], np.ndarray]


def drawer(dist: QuantizedDist | ValuesDist, integer: bool) -> Drawer:
    """A function drawing n values of `dist`: int64 for integer fields, else float64 decimals.

    Every kind consumes a fixed amount of the random stream per value, so a batch's draws
    never depend on the values drawn.
    """
    if isinstance(dist, ValuesDist):
        values = np.asarray(dist.values, dtype=np.int64 if integer else np.float64)
        return lambda rng, n: values[rng.integers(0, len(values), n)]
    low, high, q = _fraction(dist.low), _fraction(dist.high), _fraction(dist.quantum)
    if dist.dist == "uniform":
        grid = _Grid.of(low, high, q, integer)
        return lambda rng, n: grid.values(rng.integers(grid.lo, grid.hi + 1, n))
    if dist.dist == "log_uniform":
        log = _LogUniform.of(low, high, q, integer)
        return lambda rng, n: log.grid.values(log.multiples(rng, n))
    # Powers of two: low and high are powers of two, so their exponents are integers.
    e_low, e_high = round(math.log2(low)), round(math.log2(high))

    def power2(rng: np.random.Generator, n: int) -> np.ndarray:
        e = rng.integers(e_low, e_high + 1, n)
        return (np.int64(1) << e) if integer else np.ldexp(1.0, e)

    if dist.dist == "power2_uniform":
        return power2
    # power2_or_log_uniform: powers below q keep their power2 share, the rest is log-uniform.
    rest, below = _LogUniform.of(max(low, q), high, min(high, q), integer), float(q)

    def power2_or_log(rng: np.random.Generator, n: int) -> np.ndarray:
        power = power2(rng, n)
        return np.where(power < below, power, rest.grid.values(rest.multiples(rng, n)))

    return power2_or_log


def draw(
    rng: np.random.Generator, dist: QuantizedDist | ValuesDist, n: int, integer: bool
) -> np.ndarray:
    """n values of one distribution (int64 for an integer field, else float64)."""
    return drawer(dist, integer)(rng, n)


# ---------------------------------------------------------------------------------------------
# One batch: draw, generate, count, check


@dataclass(frozen=True)
class _Batch:
    """A drawn batch: sampled values, plans and counts of the generated designs, verdicts."""

    sampled: dict[str, np.ndarray]  # field -> (n,) values, or (n, stages) for anynet
    index: np.ndarray  # designs that were generated (the others failed a cheap check)
    stages: Stages  # of `index`
    counts: Counts  # of `index`
    reason: np.ndarray  # (n,) int8: 0 = meets every constraint, else 1 + REASONS position


def _in(bounds: Bounds | None, values: np.ndarray) -> np.ndarray:
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
    return _body(space.fixed_spec(), space.input_size if input_size is None else input_size)


def _body(fixed: Spec, input_size: int) -> Body:
    """What the bulk counts need from the fixed spec fields of a space."""
    return spec_body(fixed, input_size)


def iter_designs(space: Space, n: int, seed: int = 0) -> Iterator[RegNetParams | StageParams]:
    """Bulk-path inputs of n designs, before any constraint, in batches drawn as sample() does."""
    sampler = _Sampler(space, space.constraints, space.input_size)
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        params = sampler.params(sampler.draw(rng, BATCH), BATCH)
        yield params if n - start >= BATCH else params.take(np.arange(n - start))


# The sampled column holding each design's combination of choice values (an index).
CHOICE = "choices"


class _Sampler:
    """Everything fixed for one sample() call: the space, body, constraints and record format
    (one fixed spec and body per combination of the space's choice values)."""

    def __init__(self, space: Space, constraints: Constraints, input_size: int) -> None:
        self.space = space
        self.constraints = constraints
        self.combos = space.combinations()
        self.fixed_specs = [space.fixed_spec(c) for c in self.combos]
        self.fixed = self.fixed_specs[0]
        self.bodies = [_body(f, input_size) for f in self.fixed_specs]
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
            out = {name: drawer(rng, n) for name, drawer in self.drawers.items()}
        else:
            counts = self.space.stage_counts
            s, out = max(counts), {}
            several = len(counts) > 1  # one count draws nothing for it: the stream stays
            if several:
                k = np.asarray(counts, dtype=np.int64)[rng.integers(0, len(counts), n)]
            for name, drawer in self.drawers.items():
                if name in self.space.shared:
                    out[name] = np.repeat(drawer(rng, n)[:, None], s, axis=1)
                else:
                    out[name] = drawer(rng, n * s).reshape(n, s)
            if several:
                beyond = np.arange(s) >= k[:, None]
                for values in out.values():
                    values[beyond] = 0
                out["num_stages"] = k
        if len(self.combos) > 1:  # uniform over combinations: uniform per field, independent
            out[CHOICE] = rng.integers(len(self.combos), size=n)
        return out

    def _counted(self, stages: Stages, which: np.ndarray | None) -> tuple[Counts, np.ndarray]:
        """Counts and validity of the generated designs, each under its combination's body."""
        if which is None:
            return count_stages(stages, self.body), valid_designs(stages, self.body)
        counts = [count_stages(stages, body) for body in self.bodies]
        valid = np.choose(which, [valid_designs(stages, body) for body in self.bodies])
        picked = Counts(*(np.choose(which, [getattr(c, m) for c in counts]) for m in _METRICS))
        return picked, valid

    def evaluate(self, sampled: dict[str, np.ndarray], n: int) -> _Batch:
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
                fits = _in(c.stages, num_exponents)
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
        _reject(reason, index, ~_in(c.stages, stages.num_stages), "stages")
        if not c.allow_skipped_exponents:
            _reject(reason, index, stages.num_stages != stages.total_stages, "skipped_exponents")
        for metric in _METRICS:
            if getattr(c, metric) is not None:
                _reject(reason, index, ~_in(getattr(c, metric), getattr(counts, metric)), metric)
        return _Batch(sampled, index, stages, counts, reason)

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

    def keys(self, batch: _Batch, which: Sequence[int]) -> list[tuple[Any, ...]]:
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
        self, batch: _Batch, which: Sequence[int], ids: Sequence[int], names: Sequence[str]
    ) -> list[DesignRecord]:
        """The records of designs `which` of the batch (they must have been generated)."""
        if not len(which):
            return []
        idx = np.asarray(which, dtype=np.int64)
        j = np.searchsorted(batch.index, idx)
        st, counts = batch.stages, batch.counts
        lo, hi = st.offsets[j].tolist(), st.offsets[j + 1].tolist()
        flops, params, acts = (getattr(counts, m)[j].tolist() for m in _METRICS)
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

    def may_be_nearer(self, batch: _Batch, which: np.ndarray, distance: float) -> np.ndarray:
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
        for metric in _METRICS:
            bounds = getattr(self.constraints, metric)
            if bounds is None:
                continue
            x = getattr(batch.counts, metric)[which]
            if bounds.lo is not None:
                keep &= x >= max(bounds.lo, 1) / grow * (1 - 1e-9)
            if bounds.hi is not None:
                keep &= x <= max(bounds.hi, 1) * grow * (1 + 1e-9)
        return keep

    def distance(self, batch: _Batch, which: np.ndarray) -> np.ndarray:
        """How far generated designs `which` are outside the complexity bounds (log scale)."""
        total = np.zeros(len(which))
        for metric in _METRICS:
            bounds = getattr(self.constraints, metric)
            if bounds is None:
                continue
            x = np.maximum(getattr(batch.counts, metric)[which], 1).astype(np.float64)
            if bounds.lo is not None:
                total += np.maximum(0.0, np.log(max(bounds.lo, 1) / x))
            if bounds.hi is not None:
                total += np.maximum(0.0, np.log(x / max(bounds.hi, 1)))
        return total


# ---------------------------------------------------------------------------------------------
# The sampling loop


@dataclass(frozen=True)
class _Near:
    """A design rejected for its complexity only, and how far it is from the bounds."""

    distance: float
    draw: int  # overall draw number (ties go to the earlier draw)
    key: tuple[Any, ...]
    record: DesignRecord


def _resolve_constraints(
    space: Space, overrides: Mapping[str, Bounds | str | Any | None]
) -> Constraints:
    update = {k: parse_bounds(v) for k, v in overrides.items() if v is not None}
    c = space.constraints.model_copy(update=update)
    if isinstance(space, AnyNetSpace) and not _in(c.stages, np.array(space.stage_counts)).any():
        counts = " or ".join(map(str, space.stage_counts))
        raise SpaceError(
            f"{space.space}: every design has {counts} stages, outside stages {c.stages}"
        )
    return c


def _check_bounds(space: Space, sampler: _Sampler, n: int) -> int:
    """Refuse ranges whose largest designs could overflow 64-bit counts, and constraints that
    no design of the space can meet (below its smallest stem or above its largest design);
    the space's distinct designs (an upper bound), at least n."""
    if isinstance(space, RegNetSpace):
        top = {f: float(d.max_value) for f, d in space.sample.items()}
        fixed = sampler.fixed
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
    bound = max(
        count_bound(math.ceil(width), math.ceil(width * bm_hi) + 1, int(blocks), body)
        for body in sampler.bodies
    )
    b = sampler.body
    if not fits_int64(bound):
        raise SpaceError(
            f"{space.space}: designs at the top of these ranges could overflow 64-bit counts "
            f"at input size {b.input_size}; narrow the ranges"
        )
    # Every design has at least the stem (the fewest of any combination of choices).
    stems = [stem_counts(body) for body in sampler.bodies]
    least = {m: min(stem[i] for stem in stems) for i, m in enumerate(_METRICS)}
    c = sampler.constraints
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


def _values_of(dist: QuantizedDist | ValuesDist) -> int:
    """How many values a distribution can give (an upper bound for power2_or_log_uniform)."""
    if isinstance(dist, ValuesDist):
        return len(dist.values)
    low, high, q = _fraction(dist.low), _fraction(dist.high), _fraction(dist.quantum)
    if dist.dist.startswith("power2"):
        powers = round(math.log2(high)) - round(math.log2(low)) + 1
        if dist.dist == "power2_uniform":
            return powers
        return powers + math.floor(high / min(high, q)) - math.ceil(max(low, q) / q) + 1
    return math.floor(high / q) - math.ceil(low / q) + 1


def distinct_designs(space: Space) -> int:
    """An upper bound of the distinct designs of a space (distinct sampled values)."""
    total = 1
    if isinstance(space, RegNetSpace):
        for _, dist in space.sample.items():
            total *= max(1, _values_of(dist))
        return total * len(space.combinations())
    total = 0
    for stages in space.stage_counts:
        designs = 1
        for name, dist in space.per_stage.items():
            k = max(1, _values_of(dist))
            designs *= k if name in space.shared else k**stages
        total += designs
    return total * len(space.combinations())


def sample(
    space: Space | str | Path | Mapping[str, Any],
    n: int,
    *,
    seed: int = 0,
    flops: Bounds | str | tuple[Any, Any] | None = None,
    params: Bounds | str | tuple[Any, Any] | None = None,
    acts: Bounds | str | tuple[Any, Any] | None = None,
    stages: Bounds | str | int | tuple[Any, Any] | None = None,
    input_size: int | None = None,
    max_tries: int | None = None,
    progress: Callable[[SampleProgress], None] | None = None,
) -> SampleResult:
    """Draw n distinct designs from `space` that meet its constraints and these overrides.

    Bounds are "LO:HI" strings (K/M/G suffixes, open sides allowed), (lo, hi) pairs or Bounds;
    None keeps the space file's constraint, ":" removes it. Raises SampleError (carrying the
    partial result and the closest designs) when fewer than n are found within max_tries
    (default: default_max_tries(n)).
    """
    sp = load_space(space)
    if max_tries is None and isinstance(n, int):
        max_tries = default_max_tries(n)
    for label, value, top in (("n", n, MAX_DESIGNS), ("max_tries", max_tries, 1 << 62)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise SpaceError(f"{label} must be an integer from 1 to {top:,}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpaceError(f"seed must be a non-negative integer, got {seed!r}")
    size = sp.input_size if input_size is None else input_size
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        raise SpaceError(f"input size must be an integer from 1 to {MAX_INPUT_SIZE}, got {size!r}")
    overrides = {"flops": flops, "params": params, "acts": acts, "stages": stages}
    sampler = _Sampler(sp, _resolve_constraints(sp, overrides), size)
    total = _check_bounds(sp, sampler, n)  # distinct designs of the space

    rng = np.random.default_rng(seed)
    _adapt_allocator()
    records: list[DesignRecord] = []
    seen: set[tuple[Any, ...]] = set()
    closest: list[_Near] = []
    rejected = dict.fromkeys((*REASONS, "duplicate"), 0)
    tries, t0 = 0, time.perf_counter()
    repeats = 0  # acceptable draws since the last new design
    exhausted = False
    # A small space is tracked whole: once every design was drawn, more draws cannot help.
    drawn: set[tuple[Any, ...]] | None = set() if total <= SMALL_SPACE else None
    chunk = 1  # batches evaluated together; grows while designs are still missing
    while len(records) < n and tries < max_tries and not exhausted:
        # Draw batch by batch (the random stream is that of BATCH-sized batches), but
        # generate and count several at once: numpy's per-call cost is then paid per chunk.
        k = min(chunk, -(-(max_tries - tries) // BATCH))
        chunk = min(2 * chunk, CHUNK)
        draws = [sampler.draw(rng, BATCH) for _ in range(k)]
        sampled = draws[0]
        if k > 1:
            sampled = {f: np.concatenate([d[f] for d in draws]) for f in sampled}
        batch = sampler.evaluate(sampled, k * BATCH)
        accepted = np.flatnonzero(batch.reason == 0)
        start, end = tries, 0  # draws of this chunk used: batch.reason[:end]
        for b in range(k):
            lo = b * BATCH
            usable = min(BATCH, max_tries - tries)
            cut = lo + usable
            a, z = np.searchsorted(accepted, [lo, cut])
            candidates = accepted[a:z].tolist()
            picked: list[int] = []
            for i, key in zip(candidates, sampler.keys(batch, candidates), strict=True):
                if key in seen:
                    rejected["duplicate"] += 1
                    repeats += 1
                    continue
                repeats = 0
                seen.add(key)
                picked.append(i)
                if len(records) + len(picked) == n:
                    cut = i + 1
                    break
            ids = range(len(records), len(records) + len(picked))
            names = [design_name(sp.space, n, sample_id) for sample_id in ids]
            records.extend(sampler.records(batch, picked, ids, names))
            if drawn is not None:
                drawn.update(sampler.keys(batch, range(lo, cut)))
                exhausted = len(drawn) >= total and len(records) < n
            tries += cut - lo
            end = cut
            # Only repeats for this long: almost surely every acceptable design is found (a
            # design not yet seen among k found would have shown up with probability
            # >= 1 - e**-EXHAUSTED).
            exhausted = exhausted or repeats >= EXHAUSTED * (len(seen) + 1)
            if progress is not None:
                elapsed = time.perf_counter() - t0
                progress(SampleProgress(tries, len(records), n, max_tries, elapsed))
            if len(records) == n or tries >= max_tries or exhausted:
                break
        for code, count in enumerate(np.bincount(batch.reason[:end], minlength=len(REASONS) + 1)):
            if code:
                rejected[REASONS[code - 1]] += int(count)
        closest = _update_closest(sampler, batch, end, start, closest)
    result = SampleResult(
        space=sp.space,
        seed=seed,
        requested=n,
        input_size=size,
        constraints=sampler.constraints,
        records=tuple(records),
        tries=tries,
        rejected=MappingProxyType(rejected),
        closest=tuple(near.record for near in closest),
    )
    if not result.complete and exhausted and drawn is not None and len(drawn) >= total:
        found = f"only {len(records)}" if records else "none"
        advice = f"ask for at most {len(records)}" if records else "relax the constraints"
        raise SampleError(
            f"{sp.space}: {found} of the space's {total:,} distinct designs meet the "
            f"constraints (every one of them was drawn); {advice}",
            result,
        )
    if not result.complete and exhausted:
        raise SampleError(
            f"{sp.space}: only {len(records)} distinct designs meet the constraints (the last "
            f"{repeats:,} acceptable draws all repeated them); ask for at most {len(records)}",
            result,
        )
    if not result.complete:
        raise SampleError(
            f"{sp.space}: only {len(records)} of {n} designs met the constraints in "
            f"{tries:,} tries; relax the constraints or allow more tries",
            result,
        )
    return result


def _adapt_allocator() -> None:
    """Allocate and free one 4 MiB block, so that glibc keeps the sampling loop's memory.

    Each chunk allocates and frees a few MB of arrays of 10,000-odd entries. Until glibc's
    malloc has freed a large mapped block, its trim threshold stays low (128 KiB, or twice the
    largest mapped block freed so far), so such frees hand the top of the heap back to the
    kernel and the next chunk faults every page in again: a quarter of the sampling time
    (bench_sample.py, 2 cores). Freeing one mapped 4 MiB block raises the thresholds by
    glibc's own rule (mmap threshold to the block's size, trim threshold to twice that); a
    process that has freed larger blocks already is left as it is, and other C libraries
    just allocate and free 4 MiB.
    """
    np.empty(1 << 19)


def _slug(space_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", space_name).strip("._") or "design"


def design_name(space_name: str, n: int, sample_id: int) -> str:
    """Name of design `sample_id` of n from a space: the space's name and a padded id."""
    return f"{_slug(space_name)}-{sample_id:0{max(4, len(str(n - 1)))}d}"


def spec_file_names(space_name: str, n: int) -> list[str]:
    """File names of the spec files of n designs (`--specs-dir`), in sample id order."""
    return [f"{design_name(space_name, n, i)}.yaml" for i in range(n)]


def records_to_jsonl(records: Sequence[DesignRecord]) -> str:
    """One JSON object per line (floats in their shortest round-trip form)."""
    return "".join(json.dumps(r.to_dict()) + "\n" for r in records)


def records_to_csv(records: Sequence[DesignRecord]) -> str:
    """A header and one row per record; lists (and stage lists) as compact JSON cells."""
    if not records:
        return ""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rows = [r.to_dict() for r in records]
    writer.writerow(rows[0])
    for row in rows:
        writer.writerow(
            csv_cell(v) if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for v in row.values()
        )
    return buf.getvalue()


def default_max_tries(n: int) -> int:
    """Tries allowed by default for n designs: enough for one acceptance in 50,000 draws."""
    return max(MIN_MAX_TRIES, TRIES_PER_DESIGN * n)


def _update_closest(
    sampler: _Sampler, batch: _Batch, cut: int, tries: int, closest: list[_Near]
) -> list[_Near]:
    """Keep the CLOSEST designs rejected only for their complexity, nearest first."""
    if all(getattr(sampler.constraints, m) is None for m in _METRICS):
        return closest  # no design can be rejected for its complexity
    complexity = _COMPLEXITY_CODE[batch.reason[batch.index]]
    complexity[np.searchsorted(batch.index, cut) :] = False  # drawn past the cut
    mine = np.flatnonzero(complexity)
    if mine.size == 0:
        return closest
    # Once CLOSEST are kept, only designs nearer than the farthest of them can enter.
    farthest = closest[-1].distance if len(closest) == CLOSEST else math.inf
    mine = mine[sampler.may_be_nearer(batch, mine, farthest)]
    dist = sampler.distance(batch, mine)
    nearer = dist < farthest
    mine, dist = mine[nearer], dist[nearer]
    merged, added = list(closest), 0
    # Nearest first, earlier draws first among equals (a stable sort of draw order).
    order = np.argsort(dist, kind="stable")
    for j, d in zip(mine[order].tolist(), dist[order].tolist(), strict=True):
        i = int(batch.index[j])
        (key,) = sampler.keys(batch, [i])
        if any(key == near.key for near in merged):  # a design drawn twice shows once
            continue
        name = f"{_slug(sampler.space.space)}-try{tries + i}"
        (record,) = sampler.records(batch, [i], [-1], [name])
        merged.append(_Near(d, tries + i, key, record))
        added += 1
        if added == CLOSEST:  # later candidates are no nearer than these
            break
    merged.sort(key=lambda near: (near.distance, near.draw))
    return merged[:CLOSEST]
