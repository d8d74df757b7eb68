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

from ..core.errors import RegNetSpaceError
from ..core.io import OutputSet, check_folder
from .results import COMPLEXITY, Study
from .stats import Analysis, correlation_table, fmt, range_table, space_table

INSTALL_HINT = "pip install 'regnet-space[plot]'"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
LINE_MAX = 40  # spaces with at most this many models are drawn as lines through sorted points
DPI = 100


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


def _metric_label(a: Analysis) -> str:
    return f"{a.metric} ({'lower' if a.lower_is_better else 'higher'} is better)"


def _log_scale(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() >= 8)


def _x_axis(ax: Any, values: np.ndarray) -> None:
    """Log scale for wide positive ranges; ticks at 1, 2, 5 x 10^k, labels like 400M or 2G."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if _log_scale(values):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, 3)))


# ---------------------------------------------------------------------------------------------
# Figures


def edf_png(a: Analysis) -> bytes:
    """EDF curves of every space on one axis: plain (left) and complexity-normalized (right)."""
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, normalized in zip(axes, (False, True), strict=True):
        for i, s in enumerate(a.spaces):
            e = s.normalized_edf if normalized else s.edf
            if not e.values:
                continue
            x = [e.values[0], *e.values]
            y = [0.0, *e.fractions]
            n = s.normalized_n if normalized else s.n
            label = f"{s.label} (n={n}, best {fmt(s.best)})"
            ax.step(x, y, where="post", color=_color(i), lw=2, label=label)
        if not a.lower_is_better:
            ax.invert_xaxis()
        _x_axis(ax, np.array([]))
        ax.set_xlabel(_metric_label(a))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        what = f"normalized by {a.normalize_by}" if normalized else "plain"
        ax.set_title(f"{a.metric} EDF, {what}")
    sign = "<=" if a.lower_is_better else ">="
    axes[0].set_ylabel(f"fraction of models with {a.metric} {sign} x")
    return _png(fig)


def complexity_png(study: Study, a: Analysis) -> bytes:
    """The metric against flops, params and acts, one colour per space."""
    fig = _figure(13, 4.2)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, key in zip(axes, COMPLEXITY, strict=True):
        for i, s in enumerate(study.spaces):
            x = np.asarray(s.complexity[key], dtype=np.float64)
            y = np.asarray(s.metric)
            order = np.argsort(x, kind="stable")
            style = "-o" if s.n <= LINE_MAX else "o"
            size = 5 if s.n <= LINE_MAX else 3
            alpha = 1.0 if s.n <= LINE_MAX else 0.5
            ax.plot(x[order], y[order], style, color=_color(i), ms=size, alpha=alpha, label=s.label)
        _x_axis(ax, np.concatenate([np.asarray(s.complexity[key]) for s in study.spaces]))
        unit = {"flops": "flops (multiply-adds)", "params": "parameters", "acts": "activations"}
        ax.set_xlabel(unit[key])
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{a.metric} vs {key}")
    axes[0].set_ylabel(_metric_label(a))
    axes[0].legend(fontsize=9)
    return _png(fig)


def parameters_png(study: Study, a: Analysis, index: int) -> bytes | None:
    """One space: the metric against each design parameter, its good range shaded."""
    s = study.spaces[index]
    ranges = {g.parameter: g for g in a.good_ranges if g.space == s.label}
    names = [p for p in a.parameters if p in ranges]
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
        ax.axvspan(g.low, g.high, color=color, alpha=0.15, lw=0)
        ax.axvline(g.median, color=color, ls="--", lw=1)
        small = s.n <= LINE_MAX
        ax.scatter(x, y, s=28 if small else 10, color=color, alpha=0.85 if small else 0.5, lw=0)
        ax.scatter([x[best]], [y[best]], s=110, marker="*", color="black", zorder=3)
        _x_axis(ax, x)
        ax.set_title(f"{name}: {fmt(g.low)} .. {fmt(g.high)}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r * cols].set_ylabel(a.metric)
    fig.suptitle(
        f"{s.label}: {a.metric} vs design parameters (n={s.n}; shaded: good range, 2.5-97.5 % "
        f"of the best of {a.fraction:.0%} resamples; dashed: median; star: best model)",
        fontsize=10,
    )
    return _png(fig)


def draw_all(study: Study, a: Analysis) -> dict[str, bytes]:
    """Every picture of an analysis by file name: edf, complexity, one per space."""
    matplotlib = require_matplotlib()
    # User text (labels, metric names) is shown as typed: `$...$` is not math to parse.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        images = {"edf.png": edf_png(a), "complexity.png": complexity_png(study, a)}
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
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 13px; } .neg { color: #1a7f37; } .pos { color: #b3261e; }
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], rho: bool = False) -> str:
    def cell(c: str, i: int) -> str:
        cls = ""
        if rho and i > 0 and c not in ("n/a", ""):
            value = float(c)
            cls = " class='neg'" if value <= -0.3 else " class='pos'" if value >= 0.3 else ""
        return f"<td{cls}>{html.escape(c)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(c, i) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(images: Mapping[str, bytes], name: str, alt: str) -> str:
    if name not in images:
        return ""
    data = base64.b64encode(images[name]).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def render_html(
    study: Study,
    a: Analysis,
    images: Mapping[str, bytes],
    sources: Sequence[str] = (),
    extra_html: str = "",
) -> str:
    """The report: tables and the pictures embedded as data URIs (opens anywhere)."""
    e = html.escape
    total = sum(s.n for s in study.spaces)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>regnet-space analysis: {e(a.metric)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Design-space analysis: {e(a.metric)}</h1>",
        f"<p>{total} models in {len(study.spaces)} space(s); {e(_metric_label(a))}."
        + (f" Inputs: {e(', '.join(sources))}." if sources else "")
        + "</p>",
        "<h2>Error distribution functions</h2>",
        f"<p class='note'>EDF: fraction of a space's models at least as good as x. "
        f"Normalized: models weighted so every space has the same {e(a.normalize_by)} "
        f"distribution (uniform over {max(0, len(a.bin_edges) - 1)} log-spaced bins of the "
        "shared range; Radosavovic et al. 2019).</p>",
        _img(images, "edf.png", "EDFs"),
        _table(*space_table(a)),
        f"<h2>{e(a.metric)} against complexity</h2>",
        _img(images, "complexity.png", "metric against flops, params and acts"),
    ]
    parts += [
        "<h2>Good ranges of the design parameters</h2>",
        f"<p class='note'>Best model of {a.resamples:,} resamples of {a.fraction:.0%} of each "
        f"space (with replacement, seed {a.seed}); 2.5 / 50 / 97.5 percentiles of its "
        "parameter value.</p>",
        _table(*range_table(a)) if a.good_ranges else "<p>No parameter varies.</p>",
    ]
    for i, s in enumerate(study.spaces):
        parts.append(_img(images, f"parameters-{i + 1}-{_slug(s.label)}.png", s.label))
    parts += [
        "<h2>Rank correlations</h2>",
        f"<p class='note'>Spearman's rho of {e(a.metric)} with each variable "
        "(green: negative, red: positive, |rho| >= 0.3).</p>",
        _table(*correlation_table(a), rho=True),
        extra_html,  # e.g. the training curves and measured cost of study databases
    ]
    if a.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in a.notes))
        parts.append("</ul>")
    parts.append("<p class='note'>Made by regnet-space analyze.</p></body></html>\n")
    return "\n".join(p for p in parts if p)


def prepare_dir(path: str | Path, force: bool) -> Path:
    """An output folder: new, empty, or (with force) holding an earlier result; checked now."""
    return check_folder(path, force)


def write_report(
    study: Study,
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
