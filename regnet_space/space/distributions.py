"""Distributions of sampled values: what a space file and a study's `search` may draw from.

A space's parameter is a quantized distribution on [low, high] (pycls's uniform, log-uniform
and power-of-two draws, on multiples of a quantum) or a list of values; a study's recipe field
is a continuous range or a list. Both draw from numpy's PCG64 generator, and every kind
consumes a fixed amount of the random stream per value, so a batch's draws never depend on the
values drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

Number = int | float
Dist = Literal["uniform", "log_uniform", "power2_uniform", "power2_or_log_uniform"]
MAX_VALUES = 4096


def _as_tuple(value: Any) -> Any:
    # YAML gives lists; the container is converted while its items stay strictly validated.
    return tuple(value) if isinstance(value, list) else value


ListOf = BeforeValidator(_as_tuple)


def _fraction(x: Number) -> Fraction:
    """The exact value of a number as written in decimal (0.1 is 1/10)."""
    return Fraction(Decimal(str(x)))


def _is_power2(x: Number) -> bool:
    f = _fraction(x)
    if f <= 0:
        return False
    top, bottom = (f.numerator, f.denominator) if f >= 1 else (f.denominator, f.numerator)
    return bottom == 1 and top & (top - 1) == 0


# ---------------------------------------------------------------------------------------------
# The distributions of a space file


class QuantizedDist(BaseModel):
    """A number drawn from the closed range [low, high] by `dist`, on multiples of `quantum`.

    uniform: uniform over the multiples; log_uniform: log-uniform draw rounded up to a
    multiple (pycls); power2_uniform: uniform over the powers of two; power2_or_log_uniform:
    the powers of two below `quantum` with their power2_uniform share, else log_uniform.
    """

    model_config = _CONFIG

    dist: Dist
    low: Number
    high: Number
    quantum: Number = 1

    @model_validator(mode="after")
    def _check(self) -> QuantizedDist:
        d, lo, hi, q = self.dist, self.low, self.high, self.quantum
        if q <= 0:
            raise ValueError(f"quantum: must be positive, got {q}")
        if lo > hi:
            raise ValueError(f"low {lo} is above high {hi}")
        if d != "uniform" and lo <= 0:
            raise ValueError(f"low: {d} needs low > 0, got {lo}")
        if d.startswith("power2") and not all(_is_power2(v) for v in (lo, hi, q)):
            raise ValueError(f"{d}: low, high and quantum must be powers of two")
        quantum = _fraction(q)
        if _fraction(hi) / quantum * quantum.numerator >= 2**53:
            # Values are k * quantum with exact integer arithmetic on k (and exact floats).
            raise ValueError(f"high / quantum is too large for exact values ({hi} / {q})")
        if d != "power2_or_log_uniform":
            for side, v in (("low", lo), ("high", hi)):
                if _fraction(v) % quantum:
                    raise ValueError(f"{side}: {v} is not a multiple of quantum {q}")
        return self

    @property
    def min_value(self) -> Number:
        return self.low

    @property
    def max_value(self) -> Number:
        return self.high


class ValuesDist(BaseModel):
    """A value drawn uniformly from a list."""

    model_config = _CONFIG

    values: Annotated[tuple[Number, ...], ListOf] = Field(min_length=1, max_length=MAX_VALUES)

    @model_validator(mode="after")
    def _check(self) -> ValuesDist:
        if len(set(self.values)) != len(self.values):
            raise ValueError("values: every value must be listed once")
        return self

    @property
    def min_value(self) -> Number:
        return min(self.values)

    @property
    def max_value(self) -> Number:
        return max(self.values)


def range_or_choice(range_type: type, choice_type: type, kind: str, expected: str) -> Any:
    """A field type that is `range_type` or `choice_type` (told apart by a `values` key), with
    one message naming both forms when a value is neither."""

    def tag(value: Any) -> str | None:
        if isinstance(value, choice_type) or (isinstance(value, Mapping) and "values" in value):
            return "choice"
        if isinstance(value, (range_type, Mapping)):
            return "range"
        return None

    return Annotated[
        Annotated[range_type, Tag("range")] | Annotated[choice_type, Tag("choice")],
        Discriminator(tag, custom_error_type=kind, custom_error_message=expected),
    ]


def probe_values(p: QuantizedDist | ValuesDist) -> list[Number]:
    """Values whose validity as a spec field stands for every value the draw can give."""
    if isinstance(p, ValuesDist):
        return list(p.values)
    if p.dist.startswith("power2"):
        # Few values: check every power of two in range (with power2_or_log, those below q).
        powers, v = [], _fraction(p.low)
        top = _fraction(p.high if p.dist == "power2_uniform" else min(p.high, p.quantum))
        while v <= top:
            powers.append(int(v) if v.denominator == 1 and isinstance(p.low, int) else float(v))
            v *= 2
        return [*powers, p.high]
    return [p.low, p.high]


def values_of(dist: QuantizedDist | ValuesDist) -> int:
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


# ---------------------------------------------------------------------------------------------
# Drawing: one distribution -> an array of values (int64 for integer fields, else float64)


def choice_indices(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """n indices drawn uniformly from 0..k-1 (one bounded integer draw each)."""
    return rng.integers(0, k, n)


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
    """A function drawing n values of `dist`: int64 for integer fields, else float64 decimals."""
    if isinstance(dist, ValuesDist):
        values = np.asarray(dist.values, dtype=np.int64 if integer else np.float64)
        return lambda rng, n: values[choice_indices(rng, len(values), n)]
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
# Continuous ranges and lists (a study's recipe fields)


def draw_range(
    rng: np.random.Generator,
    dist: Literal["uniform", "log_uniform"],
    low: Number,
    high: Number,
    n: int,
) -> list[Number]:
    """n values from [low, high]: uniform or log-uniform; integers when low and high are.

    Integers: uniform over the integers, or the log-uniform draw rounded to the nearest.
    Log-uniform floats keep 6 significant digits, so that they read well and stay the same
    through JSON.
    """
    integer = isinstance(low, int) and isinstance(high, int)
    if dist == "uniform" and integer:
        return rng.integers(low, high + 1, n).tolist()
    if dist == "uniform":
        return (low + (high - low) * rng.random(n)).tolist()
    x = np.exp(np.log(low) + (np.log(high) - np.log(low)) * rng.random(n))
    if integer:
        return np.clip(np.rint(x), low, high).astype(np.int64).tolist()
    return [float(f"{v:.6g}") for v in x.tolist()]


def draw_choice(rng: np.random.Generator, values: Sequence[Any], n: int) -> list[Any]:
    """n values drawn uniformly from a list."""
    return [values[i] for i in choice_indices(rng, len(values), n).tolist()]
