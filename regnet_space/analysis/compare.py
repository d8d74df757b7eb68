"""Pair statistics of design spaces: two-sample tests, percentile differences, EDF bands.

- KS: ``scipy.stats.ks_2samp`` on the plain metric values (two-sided; exact p-values for
  small samples).
- Complexity-normalized KS: the largest gap between the two spaces' normalized EDFs (the
  paper's weights, computed on the pair's shared complexity range). Its p-value comes from a
  weighted bootstrap under the null hypothesis, stratified by complexity bin: in every bin
  each space's models are redrawn with replacement from both spaces' models of that bin and
  keep their weights; p = (1 + #{D* >= D}) / (1 + B).
- Percentile differences: q_a - q_b at the EDF's 10th, 25th and 50th percentiles (the
  metric value that 10 %, 25 %, 50 % of a space's models reach or beat), with the bootstrap
  95 % percentile interval (each space resampled on its own).
- EDF bands (Dvoretzky-Kiefer-Wolfowitz): with probability at least 95 % the true EDF lies
  within eps = sqrt(ln(2 / 0.05) / (2 n)) of the empirical one at every x; a normalized EDF
  uses Kish's effective sample size (sum w)^2 / sum w^2.

numpy throughout; scipy only for the KS p-value, imported when a pair is compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..infra.errors import RegNetSpaceError

PERCENTILES = (10.0, 25.0, 50.0)  # of the EDF: shares of models at least as good
CONFIDENCE = 0.95
FEW_MODELS = 100  # below this many models per space, intervals and bands are wide: warn
CELLS = 1 << 22  # bootstrap values held at once (rows x models); bounds the memory
SALT = 0xC0FFEE  # keeps the pair bootstraps independent of the good-range bootstraps
INSTALL_HINT = "pip install 'regnet-space[analysis]'"


class StatsDependencyError(RegNetSpaceError):
    """scipy is needed for the two-sample tests and is not installed."""


def ks_2samp() -> Callable[..., Any]:
    """scipy's two-sample KS test, or a one-line error naming the extra to install."""
    try:
        from scipy.stats import ks_2samp as test
    except ImportError:
        raise StatsDependencyError(
            f"analyze's two-sample tests need scipy: {INSTALL_HINT}"
        ) from None
    return test


@dataclass(frozen=True)
class PercentileDifference:
    """q_a - q_b at one percentile of the EDF, with its bootstrap interval."""

    percentile: float
    a: float
    b: float
    difference: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """Two spaces' metric distributions compared: KS plain and normalized, percentile gaps."""

    a: str
    b: str
    n_a: int
    n_b: int
    ks_statistic: float
    p_value: float
    normalized_ks_statistic: float | None  # None: the pair shares no complexity range
    normalized_p_value: float | None
    normalized_n_a: int  # models with a positive weight in the pair's normalization
    normalized_n_b: int
    differences: tuple[PercentileDifference, ...]

    @property
    def median(self) -> PercentileDifference:
        return next(d for d in self.differences if d.percentile == 50.0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the issue's fields first, then the rest."""
        m = self.median
        return {
            "a": self.a,
            "b": self.b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "ks_statistic": self.ks_statistic,
            "p_value": self.p_value,
            "median_difference": m.difference,
            "median_difference_ci": [m.low, m.high],
            "normalized": {
                "ks_statistic": self.normalized_ks_statistic,
                "p_value": self.normalized_p_value,
                "n_a": self.normalized_n_a,
                "n_b": self.normalized_n_b,
            },
            "percentile_differences": [
                {
                    "percentile": d.percentile,
                    "a": d.a,
                    "b": d.b,
                    "difference": d.difference,
                    "ci": [d.low, d.high],
                }
                for d in self.differences
            ],
        }


# ---------------------------------------------------------------------------------------------
# Building blocks


def dkw_band(n: float, confidence: float = CONFIDENCE) -> float:
    """Half-width of the DKW confidence band of an EDF of n (effective) samples."""
    if n <= 0:
        return math.nan
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * n))


def effective_n(weights: np.ndarray) -> float:
    """Kish's effective sample size of weighted samples: (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(w.sum() ** 2 / (w * w).sum()) if w.size else 0.0


def ks_gap(values: np.ndarray, signed: np.ndarray) -> np.ndarray:
    """sup_x |F_a(x) - F_b(x)| for each row: `signed` holds a's weights and minus b's weights.

    Each row of `values` pools both samples; every space's weights sum to 1. The gap is read
    at the last of each run of tied values, where both EDFs have taken the whole tie.
    """
    order = np.argsort(values, axis=-1, kind="stable")
    v = np.take_along_axis(values, order, axis=-1)
    c = np.cumsum(np.take_along_axis(signed, order, axis=-1), axis=-1)
    last = np.ones(v.shape, dtype=bool)
    last[..., :-1] = v[..., 1:] != v[..., :-1]
    return np.where(last, np.abs(c), 0.0).max(axis=-1)


def _edf_percentile(values: np.ndarray, p: float, lower_is_better: bool, axis: int = -1) -> Any:
    """The metric value that a share p % of the models reach or beat."""
    return np.percentile(values, p if lower_is_better else 100 - p, axis=axis)


def _rows(n: int, width: int) -> int:
    """Bootstrap rows per chunk so that a chunk holds about CELLS values."""
    return max(1, min(n, CELLS // max(1, width)))


def percentile_differences(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    resamples: int,
    lower_is_better: bool = True,
) -> tuple[PercentileDifference, ...]:
    """q_a - q_b at PERCENTILES with bootstrap 95 % intervals (each space resampled alone)."""
    draws = np.empty((resamples, len(PERCENTILES)))
    ps = list(PERCENTILES)
    start = 0
    while start < resamples:
        k = _rows(resamples - start, len(a) + len(b))
        ra = a[rng.integers(0, len(a), size=(k, len(a)))]
        rb = b[rng.integers(0, len(b), size=(k, len(b)))]
        qa = np.stack([_edf_percentile(ra, p, lower_is_better) for p in ps], axis=1)
        qb = np.stack([_edf_percentile(rb, p, lower_is_better) for p in ps], axis=1)
        draws[start : start + k] = qa - qb
        start += k
    tail = 100 * (1 - CONFIDENCE) / 2
    lows, highs = np.percentile(draws, [tail, 100 - tail], axis=0)
    out = []
    for j, p in enumerate(ps):
        qa, qb = (float(_edf_percentile(x, p, lower_is_better)) for x in (a, b))
        out.append(PercentileDifference(p, qa, qb, qa - qb, float(lows[j]), float(highs[j])))
    return tuple(out)


def normalized_ks(
    a: np.ndarray,
    b: np.ndarray,
    bins_a: np.ndarray,
    bins_b: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    resamples: int,
) -> tuple[float, float]:
    """Weighted KS gap of two normalized EDFs and its stratified weighted-bootstrap p-value.

    bins_a, bins_b: each model's complexity bin (-1: weight 0, left out); weights: the
    paper's normalization weights of each space (each summing to 1 over its kept models).
    """
    keep_a, keep_b = weights[0] > 0, weights[1] > 0
    values = np.concatenate([a[keep_a], b[keep_b]])
    signed = np.concatenate([weights[0][keep_a], -weights[1][keep_b]])
    bins = np.concatenate([bins_a[keep_a], bins_b[keep_b]])
    observed = float(ks_gap(values[None, :], signed[None, :])[0])
    # The null: within every bin both spaces draw from the same pool (both spaces' models).
    order = np.argsort(bins, kind="stable")
    pool = values[order]
    _, start, size = np.unique(bins[order], return_index=True, return_counts=True)
    slot = np.searchsorted(np.unique(bins), bins)
    offset, width = start[slot], size[slot]
    hits = 0
    done = 0
    while done < resamples:
        k = _rows(resamples - done, len(values))
        pick = offset + np.floor(rng.random((k, len(values))) * width).astype(np.int64)
        gaps = ks_gap(pool[pick], np.broadcast_to(signed, (k, len(values))))
        hits += int((gaps >= observed - 1e-12).sum())
        done += k
    return observed, (1 + hits) / (1 + resamples)


def compare_pair(
    labels: tuple[str, str],
    metrics: tuple[np.ndarray, np.ndarray],
    normalization: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
    rng: np.random.Generator,
    resamples: int,
    lower_is_better: bool = True,
) -> Comparison:
    """Every statistic of one pair. normalization: ((weights_a, weights_b), (bins_a, bins_b))
    on the pair's shared complexity range, or None when the pair shares none."""
    a, b = (np.asarray(m, dtype=np.float64) for m in metrics)
    if a.size < 1 or b.size < 1:
        raise ValueError("each space needs at least one model")
    ks = ks_2samp()(a, b)
    differences = percentile_differences(a, b, rng, resamples, lower_is_better)
    d_norm = p_norm = None
    kept = (0, 0)
    if normalization is not None:
        (wa, wb), (ba, bb) = normalization
        kept = (int((wa > 0).sum()), int((wb > 0).sum()))
        if all(kept):
            d_norm, p_norm = normalized_ks(a, b, ba, bb, (wa, wb), rng, resamples)
    return Comparison(
        a=labels[0],
        b=labels[1],
        n_a=int(a.size),
        n_b=int(b.size),
        ks_statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        normalized_ks_statistic=d_norm,
        normalized_p_value=p_norm,
        normalized_n_a=kept[0],
        normalized_n_b=kept[1],
        differences=differences,
    )


def few_models_warning(counts: Sequence[tuple[str, int]]) -> str | None:
    """One line when some space has fewer than FEW_MODELS models, else None."""
    few = [f"{label} ({n})" for label, n in counts if n < FEW_MODELS]
    if not few:
        return None
    return (
        f"n < {FEW_MODELS} in {', '.join(few)}: EDF bands and intervals are wide and good "
        "ranges mostly unresolved (the paper samples 500 models per space, pycls's sweeps 100-500)"
    )
