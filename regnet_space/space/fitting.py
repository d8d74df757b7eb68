"""Fitting RegNet parameters (d, w0, wa, wm) to per-block widths (the paper's e_fit).

"Designing Network Design Spaces", section 4: d is the number of blocks, and w0, wa, wm
minimize the mean log-ratio e_fit = mean_j |log(w_fit_j / w_j)| of the widths the quantized
linear rule (and the block-compatibility rule, for a group width and bottleneck multiplier)
generates against the given per-block widths.

Search: w0 over multiples of q around the first width; wm on a grid (step 0.01 over
[1.05, 5], then 0.0005 around the best few); for each (w0, wm) every distinct exponent
pattern is tried: block j's exponent steps up where wa * j = w0 * (wm**(k - 1/2) - 1), so the
breakpoints are known and the error of every wa interval follows from a cumulative sum. The
best wa is therefore exact for each (w0, wm) tried. The answer is checked (and its error
computed) by regenerating the widths with `generator.quantized_linear` and the rounding rule.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import PlanError
from ..core.generator import (
    ADJUST,
    FLOAT32_ROUNDINGS,
    quantized_linear,
    to_explicit,
)
from ..core.spec import MAX_DEPTH, MAX_WIDTH, ExplicitSpec, ParametricSpec, Rounding, Spec
from ..infra.errors import RegNetSpaceError

COARSE_WM = np.round(np.arange(105, 501) / 100, 2)  # 1.05, 1.06, ..., 5.00 (exact decimals)
FINE_STEP = 0.0005
FINE_HALF_WIDTH = 0.01
REFINE_TOP = 6  # (w0, wm) candidates of the coarse grid refined on the fine grid
TIE = 1e-12


class FitError(RegNetSpaceError, ValueError):
    """Widths that cannot be fitted (empty, non-positive, or too many)."""


@dataclass(frozen=True)
class Fit:
    """Fitted parameters, the widths they generate and the fitting error e_fit."""

    depth: int
    w0: int
    wa: float
    wm: float
    q: int
    group_width: int
    bottleneck_multiplier: float
    rounding: Rounding
    target: tuple[int, ...]  # the per-block widths fitted
    fitted: tuple[int, ...]  # the per-block widths the parameters generate
    error: float  # mean |log(fitted / target)| over blocks

    @property
    def exact(self) -> bool:
        """True when the parameters regenerate the target widths exactly."""
        return self.fitted == self.target

    def as_dict(self) -> dict[str, object]:
        """Machine-readable form."""
        return {
            "depth": self.depth,
            "w0": self.w0,
            "wa": self.wa,
            "wm": self.wm,
            "q": self.q,
            "group_width": self.group_width,
            "bottleneck_multiplier": self.bottleneck_multiplier,
            "rounding": self.rounding,
            "error": self.error,
            "exact": self.exact,
            "target": list(self.target),
            "fitted": list(self.fitted),
        }


def block_widths(spec: Spec) -> tuple[int, ...]:
    """Per-block output widths of a spec (stage widths repeated by stage depth)."""
    stages = to_explicit(spec).stages
    return tuple(s.width for s in stages for _ in range(s.depth))


def regenerate(
    depth: int,
    w0: int,
    wa: float,
    wm: float,
    q: int = 8,
    group_width: int = 8,
    bottleneck_multiplier: float = 1.0,
    rounding: Rounding = "pycls",
) -> tuple[int, ...]:
    """Per-block widths of parameters: the quantized linear rule, then block compatibility."""
    gen = quantized_linear(depth, w0, wa, wm, q, rounding in FLOAT32_ROUNDINGS)
    adjust = ADJUST[rounding]
    table = {w: adjust(w, bottleneck_multiplier, group_width)[0] for w in set(gen.quantized_widths)}
    return tuple(table[w] for w in gen.quantized_widths)


def fit_error(fitted: Sequence[int], target: Sequence[int]) -> float:
    """The paper's e_fit: mean over blocks of |log(fitted / target)|."""
    f, t = np.asarray(fitted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return float(np.mean(np.abs(np.log(f / t))))


# ---------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class _Candidate:
    """One (w0, wm) with its best wa interval: error, midpoint and relative width."""

    error: float
    robustness: float  # width of the wa interval relative to wa (wide ones survive rounding)
    w0: int
    wm: float
    wa: float


WM_CHUNKS = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0, math.inf)  # wm ranges sharing an exponent count


class _Searcher:
    """Everything fixed for one fit: targets, quantum and a width-adjustment lookup table."""

    def __init__(self, target: np.ndarray, q: int, g: int, bm: float, rounding: Rounding) -> None:
        self.t0 = int(target[0])
        self.d = len(target)
        self.q = q
        self.log_t = np.log(target.astype(np.float64))
        self.limit = 4 * float(target.max()) + 2 * g / min(bm, 1.0) + q
        adjust = ADJUST[rounding]
        top = int(self.limit // q) + 2
        # lookup[k] = block-compatible width of quantized width k * q (k = 0 is never used)
        self.lookup = np.array(
            [1.0] + [float(adjust(k * q, bm, g)[0]) for k in range(1, top + 1)], dtype=np.float64
        )

    def search(self, w0: int, wms: np.ndarray) -> list[_Candidate]:
        """For one w0 and each wm, the best wa interval: one candidate per wm."""
        out: list[_Candidate] = []
        for lo, hi in itertools.pairwise(WM_CHUNKS):
            part = wms[(wms > lo) & (wms <= hi)]
            if part.size:
                out += self._search(w0, part)
        return out

    def _search(self, w0: int, wms: np.ndarray) -> list[_Candidate]:
        d, q, m = self.d, self.q, len(wms)
        # Exponents up to the first whose width exceeds the limit for the smallest wm.
        top = max(1, math.ceil(math.log(self.limit / w0) / math.log(float(wms.min()))) + 1)
        ks = np.arange(top + 1)
        raw = np.round(w0 * np.power(wms[:, None], ks[None, :]) / q) * q  # (M, K+1)
        raw = np.clip(raw, q, (len(self.lookup) - 1) * q)  # beyond: far too wide anyway
        adjusted = self.lookup[np.rint(raw / q).astype(np.int64)]
        err = np.abs(np.log(adjusted)[:, :, None] - self.log_t[None, None, :])  # (M, K+1, d)
        err /= d  # so that sums over blocks are means
        e0 = err[:, 0, :].sum(axis=1)  # every block at exponent 0: one stage (wa ~ 0)
        if d == 1:
            return [
                _Candidate(float(e), 1.0, w0, float(x), 0.0) for e, x in zip(e0, wms, strict=True)
            ]
        j = np.arange(1, d)
        # Block j moves from exponent k-1 to k where wa = w0 (wm^(k-1/2) - 1) / j.
        c = w0 * (np.power(wms[:, None], ks[None, 1:] - 0.5) - 1.0)  # (M, K)
        brk = (c[:, :, None] / j[None, None, :]).reshape(m, -1)
        delta = (err[:, 1:, 1:] - err[:, :-1, 1:]).reshape(m, -1)
        order = np.argsort(brk, axis=1, kind="stable")
        b = np.take_along_axis(brk, order, axis=1)
        e = e0[:, None] + np.cumsum(np.take_along_axis(delta, order, axis=1), axis=1)
        # Interval p lies between b[p] and b[p+1]: realizable only if b[p+1] > b[p]; the
        # last one (past every breakpoint) would need exponents beyond the table.
        nxt = np.concatenate([b[:, 1:], np.full((m, 1), np.inf)], axis=1)
        e = np.where(nxt > b * (1 + 1e-9), e, np.inf)
        e[:, -1] = np.inf
        p = np.argmin(e, axis=1)
        rows = np.arange(m)
        best_e, lo, hi = e[rows, p], b[rows, p], nxt[rows, p]
        out = []
        for i, x in enumerate(wms.tolist()):
            if e0[i] <= best_e[i]:
                out.append(_Candidate(float(e0[i]), 1.0, w0, x, float(b[i, 0]) / 2))
            else:
                wa = float(lo[i] + hi[i]) / 2
                out.append(_Candidate(float(best_e[i]), float(hi[i] - lo[i]) / wa, w0, x, wa))
        return out

    def key(self, c: _Candidate) -> tuple[float, float, int, int, float]:
        """Preference: error, a wide wa interval, w0 near the first width, wm near 2.5."""
        err = round(c.error / TIE) * TIE
        return (err, -min(c.robustness, 0.01), abs(c.w0 - self.t0), c.w0, abs(c.wm - 2.5))


def _w0_candidates(t0: int, q: int, g: int, bm: float) -> list[int]:
    reach = g / min(bm, 1.0)
    lo = max(q, math.floor(min(0.5 * t0, t0 - reach) / q) * q)
    hi = math.ceil(max(1.5 * t0, t0 + reach) / q) * q
    return list(range(lo, min(hi, MAX_WIDTH) + 1, q))


def _round_params(
    best: _Candidate, target: tuple[int, ...], q: int, g: int, bm: float, rounding: Rounding
) -> tuple[float, float, tuple[int, ...], float]:
    """The shortest decimals of wm and wa that keep the fit as good, checked by regeneration."""
    d = len(target)
    fallback: tuple[float, float, tuple[int, ...], float] | None = None
    wms = dict.fromkeys((round(best.wm, 2), round(best.wm, 3), round(best.wm, 4), best.wm))
    was = dict.fromkeys((*(round(best.wa, n) for n in range(1, 5)), best.wa))
    for wm in wms:
        for wa in was:
            if wm <= 1 or wa < 0:
                continue
            try:
                fitted = regenerate(d, best.w0, wa, wm, q, g, bm, rounding)
            except PlanError:
                continue
            err = fit_error(fitted, target)
            if err <= best.error + 1e-9:
                return wm, wa, fitted, err
            if fallback is None or err < fallback[3]:
                fallback = (wm, wa, fitted, err)
    if fallback is None:
        raise FitError("no parameters found that generate valid widths")
    return fallback


def fit_widths(
    widths: Sequence[int],
    *,
    q: int = 8,
    group_width: int | None = None,
    bottleneck_multiplier: float = 1.0,
    rounding: Rounding = "pycls",
) -> Fit:
    """Fit d, w0, wa, wm to per-block widths (group width default q: no compatibility change)."""
    target = _check_widths(widths)
    g = q if group_width is None else int(group_width)
    if not isinstance(q, int) or q < 1 or g < 1 or not bottleneck_multiplier > 0:
        raise FitError("q and the group width must be positive integers, bm positive")
    s = _Searcher(np.asarray(target), q, g, bottleneck_multiplier, rounding)
    w0s = _w0_candidates(target[0], q, g, bottleneck_multiplier)
    coarse = [c for w0 in w0s for c in s.search(w0, COARSE_WM)]
    coarse.sort(key=s.key)
    picked: list[_Candidate] = []
    for c in coarse:
        if len(picked) == REFINE_TOP:
            break
        if all(c.w0 != p.w0 or abs(c.wm - p.wm) > FINE_HALF_WIDTH for p in picked):
            picked.append(c)
    pool = list(picked)
    steps = round(FINE_HALF_WIDTH / FINE_STEP)
    for c in picked:
        fine = np.round(c.wm + FINE_STEP * np.arange(-steps, steps + 1), 4)
        pool += s.search(c.w0, fine[fine > 1])
    best = min(pool, key=s.key)
    wm, wa, fitted, err = _round_params(best, target, q, g, bottleneck_multiplier, rounding)
    return Fit(
        depth=len(target),
        w0=best.w0,
        wa=wa,
        wm=wm,
        q=q,
        group_width=g,
        bottleneck_multiplier=bottleneck_multiplier,
        rounding=rounding,
        target=target,
        fitted=fitted,
        error=err,
    )


def fit_spec(spec: Spec) -> Fit:
    """Fit a spec's per-block widths with its own quantum, group width, bm and rounding."""
    target = block_widths(spec)
    if isinstance(spec, ParametricSpec):
        return fit_widths(
            target,
            q=spec.q,
            group_width=spec.group_width,
            bottleneck_multiplier=spec.bottleneck_multiplier,
            rounding=spec.rounding,
        )
    g, bm = shared_block_options(spec)
    return fit_widths(target, group_width=g, bottleneck_multiplier=bm)


def shared_block_options(spec: ExplicitSpec) -> tuple[int | None, float]:
    """Group width (the largest; smaller ones are clips) and the shared bm of explicit stages."""
    bms = {s.bottleneck_multiplier for s in spec.stages}
    if len(bms) > 1:
        return None, 1.0  # no single RegNet rule: fit the widths as they are
    return max(s.group_width for s in spec.stages), bms.pop()


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    out = []
    for i, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)):
            if isinstance(w, float) and w.is_integer():
                w = int(w)
            else:
                raise FitError(f"widths[{i}]: must be a positive integer, got {w!r}")
        if not 1 <= w <= MAX_WIDTH:
            raise FitError(f"widths[{i}]: must be between 1 and {MAX_WIDTH}, got {w}")
        out.append(int(w))
    if not out:
        raise FitError("no widths to fit")
    if len(out) > MAX_DEPTH:
        raise FitError(f"at most {MAX_DEPTH} blocks can be fitted, got {len(out)}")
    return tuple(out)


def parse_widths(text: str) -> tuple[int, ...]:
    """Widths from "w1,w2,..." (also "WxN" for N blocks of width W)."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"([0-9]+)(?:x([0-9]+))?", part)
        if m is None:
            raise FitError(f"--widths: expected integers like 24,56,56 or 56x2, got {part!r}")
        n = int(m.group(2) or 1)
        if not 1 <= n <= MAX_DEPTH:
            raise FitError(f"--widths: {part!r}: repeat between 1 and {MAX_DEPTH} times")
        if len(out) + n > MAX_DEPTH:
            raise FitError(f"at most {MAX_DEPTH} blocks can be fitted")
        out += [int(m.group(1))] * n
    return _check_widths(out)
