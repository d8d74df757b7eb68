"""Design-space statistics: EDFs (plain and complexity-normalized), good ranges, correlations.

- EDF (Radosavovic et al., "On Network Design Spaces for Visual Recognition", 2019): the
  fraction of a space's models whose metric is at least as good as e (error <= e).
- Complexity normalization (same paper): spaces sampled with different complexity
  distributions are compared after weighting each model so that every space's complexity
  distribution becomes the same target. Here: log-spaced bins over the complexity range
  all spaces share (flops by default); the target is uniform over the bins occupied by every
  space; a model in bin b of a space with n_b models there gets weight 1 / (B n_b); models
  outside the shared range or in bins some space lacks get weight 0 (they are counted in
  the notes). With one space this flattens its own complexity distribution.
- Good range (Radosavovic et al., CVPR 2020, section 4): draw 2,500 resamples of
  25 % of a space's models with replacement (seeded numpy Generator), keep each resample's
  best model, and report the 2.5 / 50 / 97.5 percentiles of its parameter values.
  A good range is shown only where it is resolved: where the interval spans at most half
  of the range the space's models cover (on a log scale for parameters spanning 4x or more).
- Rank correlation: Spearman's rho (Pearson's correlation of average ranks) of the metric
  with each design parameter and with flops, params and acts; numpy only. The pooled
  column "all" holds the variables every space has.
- Pairs of spaces: two-sample tests, percentile differences and EDF bands (`compare`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .compare import PERCENTILES as EDF_PERCENTILES
from .compare import SALT as PAIR_SALT
from .compare import Comparison, compare_pair, dkw_band, effective_n, few_models_warning
from .results import COMPLEXITY, AnalysisError, ResultSet, SpaceModels

Complexity = Literal["flops", "params", "acts"]
Pairs = Literal["all", "adjacent"]  # every pair of spaces, or each with the one before it
RESAMPLES = 2500
FRACTION = 0.25
PERCENTILES = (2.5, 50.0, 97.5)
MAX_BINS = 10
RESOLVED_SHARE = 0.5  # a good range spanning more of the observed range is not resolved
LOG_SPAN = 4.0  # parameters whose values span this factor are judged on a log scale
POOLED = "all"


@dataclass(frozen=True)
class EDF:
    """Sorted metric values (best first) and the weighted fraction at least as good as each."""

    values: tuple[float, ...]
    fractions: tuple[float, ...]

    def at(self, x: float, lower_is_better: bool = True) -> float:
        """Fraction of (weighted) models at least as good as x."""
        v = np.asarray(self.values)
        good = v <= x if lower_is_better else v >= x
        idx = np.flatnonzero(good)
        return float(self.fractions[idx[-1]]) if idx.size else 0.0


@dataclass(frozen=True)
class SpaceResult:
    """One space: counts, metric statistics and its plain and normalized EDFs."""

    label: str
    n: int
    best: float
    median: float
    mean: float
    worst: float
    normalized_n: int  # models with a positive weight in the normalized EDF
    normalized_median: float  # weighted median
    edf: EDF
    normalized_edf: EDF
    band: float  # DKW 95 % half-width of the EDF
    normalized_band: float  # the same for the normalized EDF, at its effective n
    normalized_n_effective: float  # Kish's effective n of the normalization weights


@dataclass(frozen=True)
class GoodRange:
    """Percentiles of the best model's parameter value over bootstrap resamples."""

    space: str
    parameter: str
    low: float  # 2.5 %
    median: float  # 50 %
    high: float  # 97.5 %
    best: float  # the parameter of the space's best model
    n: int  # models with a value of this parameter
    observed_low: float  # smallest and largest value among the space's models
    observed_high: float
    share: float | None  # share of the observed range the interval spans (None: one value)
    resolved: bool  # share <= RESOLVED_SHARE: the interval says something

    def verdict(self) -> str:
        """The good range as people read it, or why it is not shown."""
        if self.share is None:
            return "constant"
        return "resolved" if self.resolved else f"not resolved at n = {self.n}"


@dataclass(frozen=True)
class Correlation:
    """Spearman rank correlation of the metric with one variable in one space (or "all")."""

    space: str
    variable: str
    rho: float | None  # None: fewer than 3 models or a constant variable
    n: int


@dataclass(frozen=True)
class Analysis:
    """Everything `analyze` reports, in display order."""

    metric: str
    lower_is_better: bool
    normalize_by: Complexity
    bin_edges: tuple[float, ...]  # complexity bin edges of the normalization
    resamples: int
    fraction: float
    seed: int
    parameters: tuple[str, ...]
    spaces: tuple[SpaceResult, ...]
    good_ranges: tuple[GoodRange, ...]
    correlations: tuple[Correlation, ...]
    notes: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = ()
    warnings: tuple[str, ...] = ()
    pairs: Pairs = "all"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers."""
        return {
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "normalize_by": self.normalize_by,
            "bin_edges": list(self.bin_edges),
            "bootstrap": {
                "resamples": self.resamples,
                "fraction": self.fraction,
                "seed": self.seed,
                "percentiles": list(PERCENTILES),
            },
            "parameters": list(self.parameters),
            "spaces": [
                {
                    "label": s.label,
                    "n": s.n,
                    "best": s.best,
                    "median": s.median,
                    "mean": s.mean,
                    "worst": s.worst,
                    "normalized_n": s.normalized_n,
                    "normalized_median": _finite(s.normalized_median),
                    "normalized_n_effective": s.normalized_n_effective,
                    "edf_band": _finite(s.band),
                    "normalized_edf_band": _finite(s.normalized_band),
                    "edf": {"values": list(s.edf.values), "fractions": list(s.edf.fractions)},
                    "normalized_edf": {
                        "values": list(s.normalized_edf.values),
                        "fractions": list(s.normalized_edf.fractions),
                    },
                }
                for s in self.spaces
            ],
            "good_ranges": [vars(g) | {"verdict": g.verdict()} for g in self.good_ranges],
            "correlations": [vars(c).copy() for c in self.correlations],
            "pairs": self.pairs,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def _finite(x: float) -> float | None:
    """A number for JSON: None where it is not finite (JSON has no NaN)."""
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------
# Building blocks


def edf(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    lower_is_better: bool = True,
) -> EDF:
    """Empirical distribution of a metric: the (weighted) fraction at least as good as each value.

    Zero-weight models are left out; weights are normalized to sum to 1.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    v, w = v[keep], w[keep]
    if v.size == 0:
        return EDF((), ())
    order = np.argsort(v if lower_is_better else -v, kind="stable")
    frac = np.cumsum(w[order]) / w.sum()
    frac[-1] = 1.0
    return EDF(tuple(v[order].tolist()), tuple(frac.tolist()))


def complexity_weights(
    complexities: Sequence[np.ndarray], bins: int | None = None
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Per-model weights that give every space the same (uniform) complexity distribution.

    Returns the weights per space (each summing to 1, or all zero), the log-spaced bin
    edges and notes on what was left out.
    """
    weights, _, edges, notes = complexity_bins(complexities, bins)
    return weights, edges, notes


def complexity_bins(
    complexities: Sequence[np.ndarray], bins: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, list[str]]:
    """complexity_weights with each model's bin too (-1: outside the shared bins, weight 0)."""
    logs = [np.log(np.maximum(np.asarray(c, dtype=np.float64), 1.0)) for c in complexities]
    lo = max(float(x.min()) for x in logs)
    hi = min(float(x.max()) for x in logs)
    notes: list[str] = []
    if lo > hi:
        notes.append("the spaces' complexity ranges do not overlap: normalized EDFs are plain")
        uniform = [np.full(len(x), 1.0 / len(x)) for x in logs]
        return uniform, [np.full(len(x), -1) for x in logs], np.array([]), notes
    if bins is None:
        bins = int(min(MAX_BINS, max(1, round(math.sqrt(min(len(x) for x in logs))))))
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo, hi])
    nb = len(edges) - 1
    tol = 1e-9 * max(1.0, abs(hi))
    members = []
    for x in logs:
        inside = (x >= lo - tol) & (x <= hi + tol)
        b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 1)
        members.append((inside, b))
    counts = np.array([np.bincount(b[inside], minlength=nb) for inside, b in members])
    shared = (counts > 0).all(axis=0)
    used = int(shared.sum())
    weights, kept_bins = [], []
    for (inside, b), n_b in zip(members, counts, strict=True):
        ok = inside & shared[b]
        w = np.zeros(len(b))
        w[ok] = 1.0 / (used * n_b[b[ok]])
        weights.append(w)
        kept_bins.append(np.where(ok, b, -1))
    dropped = sum(int((w == 0).sum()) for w in weights)
    if dropped:
        notes.append(
            f"{dropped} model(s) outside the shared complexity range or in bins not every "
            "space occupies have weight 0 in the normalized EDFs"
        )
    return weights, kept_bins, np.exp(edges), notes


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    keep = weights > 0
    if not keep.any():
        return math.nan
    v, w = values[keep], weights[keep]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(v[order][np.searchsorted(cum, 0.5)])


def bootstrap_best(
    metric: np.ndarray,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    fraction: float = FRACTION,
    lower_is_better: bool = True,
) -> np.ndarray:
    """Index of the best model in each of `resamples` draws of fraction x n models (replaced)."""
    n = len(metric)
    k = max(1, round(fraction * n))
    idx = rng.integers(0, n, size=(resamples, k))
    scores = metric[idx] if lower_is_better else -metric[idx]
    return idx[np.arange(resamples), np.argmin(scores, axis=1)]


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, int]:
    """Spearman's rho over the pairs where both are finite, and how many pairs that is."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3:
        return None, n
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    if denom == 0:
        return None, n
    return float(np.clip((rx * ry).sum() / denom, -1, 1)), n


# ---------------------------------------------------------------------------------------------
# The analysis


def _space_result(s: SpaceModels, weights: np.ndarray, lower: bool) -> SpaceResult:
    m = np.asarray(s.metric)
    n_eff = effective_n(weights)
    return SpaceResult(
        label=s.label,
        n=s.n,
        best=float(m.min() if lower else m.max()),
        median=float(np.median(m)),
        mean=float(m.mean()),
        worst=float(m.max() if lower else m.min()),
        normalized_n=int((weights > 0).sum()),
        normalized_median=_weighted_median(m, weights),
        edf=edf(m, None, lower),
        normalized_edf=edf(m, weights, lower),
        band=dkw_band(s.n),
        normalized_band=dkw_band(n_eff),
        normalized_n_effective=n_eff,
    )


def range_share(values: np.ndarray, low: float, high: float) -> float | None:
    """Share of the values' range that [low, high] spans; log scale for wide positive ranges;
    None when the values are all equal."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return None
    if lo > 0 and hi / lo >= LOG_SPAN:
        return (math.log(high) - math.log(low)) / (math.log(hi) - math.log(lo))
    return (high - low) / (hi - lo)


def _good_ranges(
    s: SpaceModels, parameters: Sequence[str], seed: tuple[int, ...], opts: tuple[int, float, bool]
) -> list[GoodRange]:
    """Good ranges of one space; one bootstrap shared by the parameters every model has."""
    resamples, fraction, lower = opts
    m = np.asarray(s.metric)
    shared = bootstrap_best(m, np.random.default_rng(seed), resamples, fraction, lower)
    out = []
    for j, name in enumerate(parameters):
        v = np.asarray(s.parameters.get(name, ()), dtype=np.float64)
        ok = np.isfinite(v)
        if not ok.any():
            continue
        if ok.all():
            picks = v[shared]
        else:  # only the models that have this parameter (e.g. a fifth stage) compete
            rng = np.random.default_rng((*seed, j + 1))
            sub = np.flatnonzero(ok)
            picks = v[sub[bootstrap_best(m[sub], rng, resamples, fraction, lower)]]
        low, med, high = np.percentile(picks, PERCENTILES)
        mv = np.where(ok, m, np.inf if lower else -np.inf)
        best = v[int(np.argmin(mv) if lower else np.argmax(mv))]
        share = range_share(v[ok], float(low), float(high))
        out.append(
            GoodRange(
                space=s.label,
                parameter=name,
                low=float(low),
                median=float(med),
                high=float(high),
                best=float(best),
                n=int(ok.sum()),
                observed_low=float(v[ok].min()),
                observed_high=float(v[ok].max()),
                share=share,
                resolved=share is not None and share <= RESOLVED_SHARE,
            )
        )
    return out


def _correlations(
    label: str,
    metric: np.ndarray,
    columns: dict[str, np.ndarray],
) -> list[Correlation]:
    out = []
    for name, values in columns.items():
        rho, n = spearman(values, metric)
        out.append(Correlation(label, name, rho, n))
    return out


def analyze(
    study: ResultSet,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    fraction: float = FRACTION,
    bins: int | None = None,
    normalize_by: Complexity = "flops",
    pairs: Pairs = "all",
) -> Analysis:
    """EDFs, complexity-normalized EDFs, bootstrap good ranges, rank correlations and the
    pair statistics (of every pair of spaces, or of each space with the one before it)."""
    if normalize_by not in COMPLEXITY:
        raise AnalysisError(f"normalize by one of {', '.join(COMPLEXITY)}, got {normalize_by!r}")
    if pairs not in ("all", "adjacent"):
        raise AnalysisError(f"pairs: all or adjacent, got {pairs!r}")
    if not isinstance(resamples, int) or not 1 <= resamples <= 1_000_000:
        raise AnalysisError(f"resamples must be from 1 to 1,000,000, got {resamples!r}")
    if not 0 < fraction <= 1:
        raise AnalysisError(f"the resample fraction must be in (0, 1], got {fraction!r}")
    if bins is not None and not 1 <= bins <= 1000:
        raise AnalysisError(f"bins must be from 1 to 1000, got {bins!r}")
    lower = study.lower_is_better
    weights, edges, notes = complexity_weights(
        [np.asarray(s.complexity[normalize_by]) for s in study.spaces], bins
    )
    spaces, ranges, corrs, parts = [], [], [], []
    for i, (s, w) in enumerate(zip(study.spaces, weights, strict=True)):
        spaces.append(_space_result(s, w, lower))
        ranges += _good_ranges(s, study.parameters, (seed, i), (resamples, fraction, lower))
        parts.append(_columns(s, study.parameters))
        corrs += _correlations(s.label, np.asarray(s.metric), parts[-1])
    if len(study.spaces) > 1:
        pooled = _pooled(study, parts)
        corrs += _correlations(POOLED, pooled[0], pooled[1])
    warning = few_models_warning([(s.label, s.n) for s in study.spaces])
    return Analysis(
        metric=study.metric,
        lower_is_better=lower,
        normalize_by=normalize_by,
        bin_edges=tuple(float(e) for e in edges),
        resamples=resamples,
        fraction=fraction,
        seed=seed,
        parameters=study.parameters,
        spaces=tuple(spaces),
        good_ranges=tuple(ranges),
        correlations=tuple(corrs),
        notes=tuple(notes),
        comparisons=_comparisons(study, (seed, resamples), bins, normalize_by, pairs),
        warnings=(warning,) if warning else (),
        pairs=pairs,
    )


def _comparisons(
    study: ResultSet,
    bootstrap: tuple[int, int],
    bins: int | None,
    normalize_by: Complexity,
    pairs: Pairs,
) -> tuple[Comparison, ...]:
    """Pairs of spaces (a before b in input order: every pair, or each space's predecessor
    with it), each normalized on its own shared range."""
    seed, resamples = bootstrap
    spaces = study.spaces
    out = []
    for i in range(len(spaces)):
        last = min(i + 2, len(spaces)) if pairs == "adjacent" else len(spaces)
        for j in range(i + 1, last):
            a, b = spaces[i], spaces[j]
            cx = [np.asarray(s.complexity[normalize_by]) for s in (a, b)]
            weights, kept, edges, _ = complexity_bins(cx, bins)
            normalization = None if len(edges) == 0 else (tuple(weights), tuple(kept))
            out.append(
                compare_pair(
                    (a.label, b.label),
                    (np.asarray(a.metric), np.asarray(b.metric)),
                    normalization,  # type: ignore[arg-type]
                    np.random.default_rng([seed, PAIR_SALT, i, j]),
                    resamples,
                    study.lower_is_better,
                )
            )
    return tuple(out)


def _columns(s: SpaceModels, parameters: Sequence[str]) -> dict[str, np.ndarray]:
    nan = np.full(s.n, np.nan)
    cols = {p: np.asarray(s.parameters.get(p, nan), dtype=np.float64) for p in parameters}
    cols.update({c: np.asarray(s.complexity[c], dtype=np.float64) for c in COMPLEXITY})
    return cols


def _pooled(
    study: ResultSet, parts: Sequence[dict[str, np.ndarray]]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every space's metric and the columns every space has (`parts`, one per space).

    A column only some spaces have would pool those spaces alone (a RegNet's depth beside
    an AnyNet's d1): "all" would repeat them under a name that claims every space.
    """
    metric = np.concatenate([np.asarray(s.metric) for s in study.spaces])
    common = [k for k in parts[0] if all(np.isfinite(p[k]).any() for p in parts)]
    return metric, {k: np.concatenate([p[k] for p in parts]) for k in common}


# ---------------------------------------------------------------------------------------------
# Tables (shared by the text output and the HTML report)


def fmt(x: float | None, digits: int = 4) -> str:
    """A number for people: 4 significant digits, K/M/G for large counts."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e4)):
        if abs(x) >= scale:
            return f"{x / (scale if unit != 'K' else 1e3):.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def space_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """One row per space: n, best, median, mean, worst, the normalized median, EDF bands."""
    headers = ["space", "n", "best", "median", "mean", "worst", "norm. n", "norm. median"]
    headers += ["95 % band"]
    rows = [
        [
            s.label,
            str(s.n),
            *(fmt(x) for x in (s.best, s.median, s.mean, s.worst)),
            str(s.normalized_n),
            fmt(s.normalized_median),
            f"±{s.band:.2f}",
        ]
        for s in a.spaces
    ]
    return headers, rows


def range_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """One row per space and parameter: the good range where resolved, the best model's value
    and the range the space's models cover."""
    headers = ["space", "parameter", "good range (2.5-97.5 %)", "median", "best model"]
    headers += ["observed"]
    rows = []
    for g in a.good_ranges:
        # Depths, widths and group widths are whole numbers: percentiles print as integers.
        show = _whole if _is_integer_parameter(g.parameter) else fmt
        if g.resolved:
            good, median = f"{show(g.low)} .. {show(g.high)}", show(g.median)
        else:
            good, median = g.verdict(), ""
        observed = f"{show(g.observed_low)} .. {show(g.observed_high)}"
        rows.append([g.space, g.parameter, good, median, show(g.best), observed])
    return headers, rows


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2g}" if x >= 1e-4 else "<1e-4"


def comparison_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """One row per pair of spaces: n on both sides, KS plain and complexity-normalized."""
    headers = ["a", "b", "n a", "n b", "KS D", "p", "norm. D", "norm. p", "norm. n a/b"]
    rows = [
        [
            c.a,
            c.b,
            str(c.n_a),
            str(c.n_b),
            f"{c.ks_statistic:.2f}",
            _p(c.p_value),
            "n/a" if c.normalized_ks_statistic is None else f"{c.normalized_ks_statistic:.2f}",
            _p(c.normalized_p_value),
            f"{c.normalized_n_a}/{c.normalized_n_b}",
        ]
        for c in a.comparisons
    ]
    return headers, rows


def difference_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """One row per pair: a - b at the EDF's 10th, 25th and 50th percentiles, 95 % intervals."""
    headers = ["a", "b"]
    headers += [f"a - b at {p:g} % [95 % CI]" for p in EDF_PERCENTILES]
    rows = [
        [
            c.a,
            c.b,
            *(f"{d.difference:+.3g} [{d.low:+.3g}, {d.high:+.3g}]" for d in c.differences),
        ]
        for c in a.comparisons
    ]
    return headers, rows


def _is_integer_parameter(name: str) -> bool:
    """depth, w0, group_width, num_stages and AnyNet's per-stage d1, w1, g1 are integers."""
    return name in ("depth", "w0", "group_width", "num_stages") or bool(
        re.fullmatch(r"[dwg]\d+", name)
    )


def _whole(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return str(round(x))


def correlation_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """One row per variable, one column per space: Spearman's rho with the metric."""
    labels = list(dict.fromkeys(c.space for c in a.correlations))
    variables = list(dict.fromkeys(c.variable for c in a.correlations))
    rho = {(c.space, c.variable): c.rho for c in a.correlations}
    rows = [[v, *(fmt(rho.get((s, v)), 2) for s in labels)] for v in variables]
    return ["variable", *labels], rows
