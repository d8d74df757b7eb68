"""Pictures of an analysis (matplotlib PNGs) and one self-contained HTML report embedding them.

matplotlib is optional (``pip install 'regnet-space[plot]'``); it is imported only here, only
when a picture is drawn, through its object API (no pyplot, no global figure state).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..infra.errors import RegNetSpaceError
from ..infra.outputs import OutputSet
from ..infra.paths import check_folder
from .results import COMPLEXITY, NOT_RECORDED, ResultSet
from .stats import (
    RESOLVED_SHARE,
    Analysis,
    comparison_table,
    correlation_table,
    difference_table,
    fmt,
    range_table,
    space_table,
)

INSTALL_HINT = "pip install 'regnet-space[plot]'"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
SMALL = 40  # spaces with at most this many models get larger, opaque markers
DPI = 100
MAX_TABLE_ROWS = 20_000  # the trial table's rows at most (the best of each space first)
UNITS = {"flops": "flops (multiply-adds)", "params": "parameters", "acts": "activations"}


class PlotDependencyError(RegNetSpaceError):
    """matplotlib is needed for pictures and is not installed."""


def require_matplotlib() -> Any:
    """The matplotlib module, or a one-line error naming the extra to install."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise PlotDependencyError(
            f"plots need matplotlib: {INSTALL_HINT} (or use --no-plots for the tables only)"
        ) from None
    return matplotlib


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _metric_label(a: Analysis, unit: str = "") -> str:
    shown = f"{a.metric} ({unit})" if unit else a.metric
    return f"{shown}, {'lower' if a.lower_is_better else 'higher'} is better"


def _log_scale(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() >= 8)


def _x_axis(ax: Any, values: np.ndarray, log: bool = False) -> None:
    """Log scale for wide positive ranges (or when asked, for positive values); ticks at
    1, 2, 5 x 10^k, labels like 400M or 2G."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    v = values[np.isfinite(values)]
    if _log_scale(values) or (log and v.size and v.min() > 0):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, 3)))


# ---------------------------------------------------------------------------------------------
# Figures


def edf_png(a: Analysis, unit: str = "") -> bytes:
    """EDF curves of every space on one axis: plain (left) and complexity-normalized (right),
    each in its 95 % DKW band."""
    fig = _figure(11, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, normalized in zip(axes, (False, True), strict=True):
        for i, s in enumerate(a.spaces):
            e = s.normalized_edf if normalized else s.edf
            if not e.values:
                continue
            x = np.array([e.values[0], *e.values])
            y = np.array([0.0, *e.fractions])
            band = s.normalized_band if normalized else s.band
            n = s.normalized_n if normalized else s.n
            label = f"{s.label} (n={n}, best {fmt(s.best)})"
            ax.step(x, y, where="post", color=_color(i), lw=2, label=label)
            lo, hi = np.clip(y - band, 0, 1), np.clip(y + band, 0, 1)
            ax.fill_between(x, lo, hi, step="post", color=_color(i), alpha=0.12, lw=0)
        if not a.lower_is_better:
            ax.invert_xaxis()
        _x_axis(ax, np.array([]))
        ax.set_xlabel(_metric_label(a, unit))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        what = f"normalized by {a.normalize_by}" if normalized else "plain"
        ax.set_title(f"{a.metric} EDF, {what} (shaded: 95 % band)")
    sign = "<=" if a.lower_is_better else ">="
    axes[0].set_ylabel(f"fraction of models with {a.metric} {sign} x")
    return _png(fig)


def complexity_png(study: ResultSet, a: Analysis) -> bytes:
    """The metric against flops, params and acts: one point per model, one colour per space,
    log x (samples are independent draws, so no line joins them)."""
    fig = _figure(13, 4.4)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, key in zip(axes, COMPLEXITY, strict=True):
        for i, s in enumerate(study.spaces):
            x = np.asarray(s.complexity[key], dtype=np.float64)
            small = s.n <= SMALL
            ax.scatter(x, np.asarray(s.metric), s=26 if small else 10, color=_color(i),
                       alpha=0.9 if small else 0.5, lw=0, label=f"{s.label} (n={s.n})")  # fmt: skip
        values = np.concatenate([np.asarray(s.complexity[key]) for s in study.spaces])
        _x_axis(ax, values, log=True)
        ax.set_xlabel(f"{UNITS[key]}, log scale")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{a.metric} vs {key}")
    axes[0].set_ylabel(_metric_label(a, study.unit))
    axes[0].legend(fontsize=9)
    return _png(fig)


def parameters_png(study: ResultSet, a: Analysis, index: int) -> bytes | None:
    """One space: the metric against each design parameter, its good range shaded."""
    s = study.spaces[index]
    # A parameter the space holds constant (a RegNet's stage count) has nothing to show.
    ranges = {g.parameter: g for g in a.good_ranges if g.space == s.label}
    names = [p for p in a.parameters if p in ranges and ranges[p].share is not None]
    if not names:
        return None
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(3.3 * cols, 2.9 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    y = np.asarray(s.metric)
    color = _color(index)
    best = int(np.argmin(y) if a.lower_is_better else np.argmax(y))
    for ax, name in zip(axes, names, strict=False):
        x = np.asarray(s.parameters[name], dtype=np.float64)
        g = ranges[name]
        if g.resolved:
            ax.axvspan(g.low, g.high, color=color, alpha=0.15, lw=0)
            ax.axvline(g.median, color=color, ls="--", lw=1)
            title = f"{name}: {fmt(g.low)} .. {fmt(g.high)}"
        else:
            title = f"{name}: {g.verdict()}"
        small = s.n <= SMALL
        ax.scatter(x, y, s=28 if small else 10, color=color, alpha=0.85 if small else 0.5, lw=0)
        ax.scatter([x[best]], [y[best]], s=110, marker="*", color="black", zorder=3)
        _x_axis(ax, x)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r * cols].set_ylabel(_metric_label(a, study.unit).split(",")[0])
    fig.suptitle(
        f"{s.label}: {a.metric} vs design parameters (n={s.n}; shaded where resolved: good "
        f"range, 2.5-97.5 % of the best of {a.fraction:.0%} resamples; dashed: median; star: "
        "best model)",
        fontsize=10,
    )
    return _png(fig)


def draw_all(study: ResultSet, a: Analysis) -> dict[str, bytes]:
    """Every picture of an analysis by file name: edf, complexity, one per space."""
    matplotlib = require_matplotlib()
    # User text (labels, metric names) is shown as typed: `$...$` is not math to parse.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        images = {"edf.png": edf_png(a, study.unit), "complexity.png": complexity_png(study, a)}
        for i, s in enumerate(study.spaces):
            png = parameters_png(study, a, i)
            if png is not None:
                images[f"parameters-{i + 1}-{_slug(s.label)}.png"] = png
    return images


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "space"


# ---------------------------------------------------------------------------------------------
# HTML


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1320px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child, .t { text-align: left; }
table.facts td, table.facts th { text-align: left; vertical-align: top; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable td, table.sortable th { white-space: nowrap; }
table.sortable th[aria-sort=ascending]::after { content: " \25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \25BC"; }
.scroll { max-height: 36em; overflow: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 13px; } .neg { color: #1a7f37; } .pos { color: #b3261e; }
.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: 0.4em 0.8em; }
"""

# Click a header to sort (again: the other way); report.html#sort=ID:COLUMN[:desc] sorts on
# opening. Numbers sort as numbers, empty cells last.
_SORT_JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') return null;
    var x = Number(v);
    return isNaN(x) ? v : x;
  }
  function sortBy(table, column, dir) {
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[column]), y = key(b.cells[column]);
      if (x === null || y === null) return (x === null) - (y === null);
      if (typeof x !== typeof y) return typeof x === 'number' ? -1 : 1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h, j) {
      h.setAttribute('aria-sort', j === column ? (dir > 0 ? 'ascending' : 'descending') : 'none');
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (t) {
    Array.prototype.forEach.call(t.tHead.rows[0].cells, function (h, i) {
      h.addEventListener('click', function () {
        sortBy(t, i, h.getAttribute('aria-sort') === 'ascending' ? -1 : 1);
      });
    });
    t.setAttribute('data-sortable', 'ready');
  });
  var m = /^#sort=([A-Za-z0-9_-]+):([0-9]+)(:desc)?$/.exec(location.hash);
  var t = m && document.getElementById(m[1]);
  if (t && t.classList.contains('sortable') && +m[2] < t.tHead.rows[0].cells.length) {
    sortBy(t, +m[2], m[3] ? -1 : 1);
  }
})();
"""


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], rho: bool = False, text: int = 1
) -> str:
    """An HTML table; the first `text` columns are text (left-aligned), the rest numbers."""

    def cell(c: str, i: int) -> str:
        cls = " class='t'" if i < text else ""
        if rho and i > 0 and c not in ("n/a", ""):
            value = float(c)
            cls = " class='neg'" if value <= -0.3 else " class='pos'" if value >= 0.3 else ""
        return f"<td{cls}>{html.escape(c)}</td>"

    head = "".join(f"<th{' class=t' if i < text else ''}>{html.escape(h)}</th>"
                   for i, h in enumerate(headers))  # fmt: skip
    body = "".join("<tr>" + "".join(cell(c, i) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(images: Mapping[str, bytes], name: str, alt: str) -> str:
    if name not in images:
        return ""
    data = base64.b64encode(images[name]).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def inputs_table(study: ResultSet) -> tuple[list[str], list[list[str]]]:
    """One row per input file: its kind, spaces, records read and what it records about
    them (space, recipe, data, ...; "not recorded" where it does not say)."""
    keys = list(dict.fromkeys(k for f in study.inputs for k in f.facts))
    headers = ["file", "kind", "spaces", "records", *keys]
    rows = [
        [f.path, f.kind, ", ".join(f.labels), str(f.records)]
        + [f.facts.get(k, NOT_RECORDED) for k in keys]
        for f in study.inputs
    ]
    return headers, rows


def _number_key(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def trial_rows(study: ResultSet) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Every model (best first within each space): space, name, metric, counts, every design
    parameter and searched recipe field; each cell as (shown text, sort key)."""
    varying = list(study.parameters)
    others = [k for s in study.spaces for k in s.parameters if k not in varying]
    params = varying + list(dict.fromkeys(others))
    unit = f" ({study.unit})" if study.unit else ""
    flagged = any(s.flags for s in study.spaces)  # study trials: stopped early, diverged
    headers = ["space", "model", f"{study.metric}{unit}", *(["flags"] if flagged else [])]
    headers += [*COMPLEXITY, *params]
    rows = []
    for s in study.spaces:
        metric = np.asarray(s.metric)
        order = np.argsort(metric if study.lower_is_better else -metric, kind="stable")
        for i in order.tolist():
            row = [(s.label, s.label), (s.names[i], s.names[i])]
            row.append((f"{metric[i]:.4g}", _number_key(metric[i])))
            if flagged:
                flag = s.flags[i] if s.flags else ""
                row.append((flag, flag))
            row += [(fmt(s.complexity[k][i]), _number_key(s.complexity[k][i])) for k in COMPLEXITY]
            for k in params:
                v = s.parameters.get(k, (math.nan,) * s.n)[i]
                row.append(("", "") if not math.isfinite(v) else (fmt(v), _number_key(v)))
            rows.append(row)
    return headers, rows


def _sortable(
    table_id: str, headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]
) -> str:
    e = html.escape
    head = "".join(
        f"<th aria-sort='none'{' class=t' if i < 2 else ''}>{e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td data-v='{e(k)}'{' class=t' if i < 2 else ''}>{e(t)}</td>"
            for i, (t, k) in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return (
        f"<div class='scroll'><table id='{e(table_id)}' class='sortable'><thead><tr>{head}</tr>"
        f"</thead><tbody>{body}</tbody></table></div>"
    )


def _header(study: ResultSet) -> list[str]:
    """What was analyzed: the inputs and what they record, the filters, n per space."""
    e = html.escape
    read = sum(f.records for f in study.inputs)
    kept = sum(s.n for s in study.spaces)
    parts = ["<h2>What was analyzed</h2>"]
    if study.inputs:
        parts.append(_table(*inputs_table(study)).replace("<table>", "<table class='facts'>", 1))
    filters = "; ".join(study.filters) if study.filters else "none"
    line = f"Filters: {e(filters)}"
    if study.inputs:
        line += f" ({kept:,} of {read:,} records kept)"
    if study.split:
        line += f". Spaces split by {e(study.split)}"
    sizes = ", ".join(f"{e(s.label)}: n = {s.n}" for s in study.spaces)
    parts.append(f"<p>{line}. Models per space: {sizes}.</p>")
    parts += [f"<p class='warning'>{e(n)}.</p>" for n in study.notes]
    return parts


def _opening(study: ResultSet, a: Analysis, sources: Sequence[str]) -> list[str]:
    """The report's head, title, inputs, warnings and header, and its EDF section."""
    e = html.escape
    total = sum(s.n for s in study.spaces)
    bins = max(0, len(a.bin_edges) - 1)
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>regnet-space analysis: {e(a.metric)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Design-space analysis: {e(a.metric)}</h1>",
        f"<p>{total} models in {len(study.spaces)} space(s); {e(_metric_label(a, study.unit))}."
        + (f" Inputs: {e(', '.join(sources))}." if sources else "")
        + "</p>",
        *(f"<p class='warning'>Warning: {e(w)}.</p>" for w in a.warnings),
        *_header(study),
        "<h2>Error distribution functions</h2>",
        f"<p class='note'>EDF: the fraction of a space's models at least as good as x; shaded: "
        "its 95 % confidence band (Dvoretzky-Kiefer-Wolfowitz). The normalized EDF weights "
        f"each model so that every space has the same {e(a.normalize_by)} distribution "
        f"(uniform over the {bins} log-spaced bins of the range all spaces share), so spaces "
        "are compared at equal complexity; norm. n counts the models with a positive weight "
        "(Radosavovic et al. 2019).</p>",
    ]


def _pairs_section(study: ResultSet, a: Analysis) -> list[str]:
    """Whether the spaces differ: the pair tests and the percentile differences."""
    if not a.comparisons:
        return []
    e = html.escape
    which = "Each pair" if a.pairs == "all" else "Each space against the one before it"
    return [
        "<h2>Do the spaces differ?</h2>",
        f"<p class='note'>{which}: the two-sample Kolmogorov-Smirnov test of "
        f"{e(a.metric)} (D: the largest gap between the EDFs); the same on EDFs normalized "
        f"on the pair's shared {e(a.normalize_by)} range, its p-value from "
        f"{a.resamples:,} bootstrap draws within complexity bins (seed {a.seed}); and "
        f"a - b at the EDF's 10th, 25th and 50th percentiles in {e(a.metric)}"
        f"{' (' + e(study.unit) + ' points)' if study.unit == '%' else ''}, with "
        "bootstrap 95 % intervals.</p>",
        _table(*comparison_table(a), text=2),
        _table(*difference_table(a), text=2),
    ]


def _ranges_section(study: ResultSet, a: Analysis, images: Mapping[str, bytes]) -> list[str]:
    """The metric against complexity, and the good ranges of the design parameters."""
    e = html.escape
    parts = [
        f"<h2>{e(a.metric)} against complexity</h2>",
        _img(images, "complexity.png", "metric against flops, params and acts"),
        "<h2>Good ranges of the design parameters</h2>",
        f"<p class='note'>Best model of {a.resamples:,} resamples of {a.fraction:.0%} of each "
        f"space (with replacement, seed {a.seed}); 2.5 / 50 / 97.5 percentiles of its "
        f"parameter value, shown where that interval spans at most {RESOLVED_SHARE:.0%} of "
        "the range the space's models cover (log scale for parameters spanning 4x or more); "
        "else not resolved at this n.</p>",
        _table(*range_table(a), text=3) if a.good_ranges else "<p>No parameter varies.</p>",
    ]
    for i, s in enumerate(study.spaces):
        parts.append(_img(images, f"parameters-{i + 1}-{_slug(s.label)}.png", s.label))
    return parts


def _models_section(study: ResultSet, a: Analysis) -> list[str]:
    """The rank correlations and the sortable table of every model."""
    e = html.escape
    headers, rows = trial_rows(study)
    shown = rows[:MAX_TABLE_ROWS]
    return [
        "<h2>Rank correlations</h2>",
        f"<p class='note'>Spearman's rho of {e(a.metric)} with each variable "
        "(green: negative, red: positive, |rho| >= 0.3); all: every space's models pooled, "
        "for the variables every space has.</p>",
        _table(*correlation_table(a), rho=True),
        "<h2>Every model</h2>",
        f"<p class='note'>{len(rows):,} models, best first within each space"
        + (f" (the first {len(shown):,} shown)" if len(shown) < len(rows) else "")
        + "; click a column to sort.</p>",
        _sortable("trials", headers, shown),
    ]


def render_html(
    study: ResultSet,
    a: Analysis,
    images: Mapping[str, bytes],
    sources: Sequence[str] = (),
    extra_html: str = "",
) -> str:
    """The report: tables and the pictures embedded as data URIs (opens anywhere)."""
    parts = [
        *_opening(study, a, sources),
        _img(images, "edf.png", "EDFs"),
        _table(*space_table(a)),
        *_pairs_section(study, a),
        *_ranges_section(study, a, images),
        *_models_section(study, a),
        extra_html,  # e.g. the training curves and measured cost of study databases
    ]
    if a.notes:
        e = html.escape
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in a.notes))
        parts.append("</ul>")
    parts.append("<p class='note'>Made by regnet-space analyze.</p>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>\n")
    return "\n".join(p for p in parts if p)


def prepare_dir(path: str | Path, force: bool) -> Path:
    """An output folder: new, empty, or (with force) holding an earlier result; checked now."""
    return check_folder(path, force)


def write_report(
    study: ResultSet,
    a: Analysis,
    out_dir: str | Path,
    *,
    force: bool = False,
    plots: bool = True,
    json_text: str | None = None,
    sources: Sequence[str] = (),
    extra_images: Mapping[str, bytes] | None = None,
    extra_html: str = "",
) -> list[Path]:
    """Write report.html (and the PNGs, and results.json when given) into out_dir, together:
    all of them appear at once or none does, and with force an earlier result's other files go.
    """
    images = {**draw_all(study, a), **(extra_images or {})} if plots else {}
    html = render_html(study, a, images, sources, extra_html)
    names = [*images, *(["results.json"] if json_text is not None else []), "report.html"]
    outputs = OutputSet(force)
    folder = outputs.folder(out_dir, names)
    with outputs.staging() as staging:
        for name, data in images.items():
            staging.write_bytes(folder / name, data)
        if json_text is not None:
            staging.write_text(folder / "results.json", json_text)
        staging.write_text(folder / "report.html", html)
    return [Path(out_dir) / name for name in names]
