"""The study-database part of an analysis report: training curves and measured cost.

As pycls's sweep analysis does: the per-epoch test error and training loss of the best and
worst trials, and the error against what training actually cost (train seconds, images per
second) beside flops, params and acts. matplotlib only when a picture is drawn.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .plots import _color, _figure, _img, _png, _slug, _table, _x_axis
from .stats import fmt
from .studydb import StudyDb, Trial

CURVES = 3  # best and worst trials drawn per study


def extremes(db: StudyDb, k: int = CURVES) -> tuple[list[Trial], list[Trial]]:
    """The k best and k worst finished trials (no trial in both)."""
    done = db.done()
    n_best = min(k, (len(done) + 1) // 2)
    best = done[:n_best]
    worst = list(reversed(done[n_best:]))[:k]
    return best, worst


def curves_png(db: StudyDb, k: int = CURVES) -> bytes | None:
    """Test error and training loss per epoch of the best (solid) and worst (dashed) trials."""
    best, worst = extremes(db, k)
    if not best:
        return None
    fig = _figure(11, 4.2)
    ax_err, ax_loss = fig.subplots(1, 2, sharex=True)
    for group, style in ((best, "-o"), (worst, "--s")):
        for t in group:
            epochs = [int(c["epoch"]) for c in t.curve]
            color = _color(db.trials.index(t))
            label = f"{t.name}: {t.error:.2f} %"
            ax_err.plot(epochs, [c["test_error"] for c in t.curve], style, color=color, ms=4,
                        label=label)  # fmt: skip
            ax_loss.plot(epochs, [c["train_loss"] for c in t.curve], style, color=color, ms=4)
    from matplotlib.ticker import MaxNLocator

    ax_err.set_ylabel("test error (top-1 %)")
    ax_loss.set_ylabel("training loss")
    losses = [c["train_loss"] for t in (*best, *worst) for c in t.curve]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
        ax_loss.set_yscale("log")
    for ax in (ax_err, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_err.legend(fontsize=8, title="best (solid) and worst (dashed)", title_fontsize=8)
    ax_err.set_title(f"{db.name}: test error per epoch")
    ax_loss.set_title(f"{db.name}: training loss per epoch")
    return _png(fig)


def cost_png(db: StudyDb) -> bytes | None:
    """Final error against measured cost: training seconds and training images per second."""
    done = db.done()
    if not done:
        return None
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    y = np.array([t.error for t in done])
    for ax, key, label in (
        (axes[0], "train_seconds", "training time (s)"),
        (axes[1], "images_per_second", "training throughput (images/s)"),
    ):
        x = np.array([getattr(t, key) or np.nan for t in done], dtype=np.float64)
        ax.scatter(x, y, s=30, color=_color(0), alpha=0.85, lw=0)
        ax.scatter([x[0]], [y[0]], s=120, marker="*", color="black", zorder=3)
        _x_axis(ax, x)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test error (top-1 %)")
    fig.suptitle(f"{db.name}: error against measured cost (n={len(done)}; star: best)")
    return _png(fig)


def draw_study(dbs: Sequence[StudyDb]) -> dict[str, bytes]:
    """The pictures of every study database, by file name."""
    images: dict[str, bytes] = {}
    for i, db in enumerate(dbs):
        for kind, png in (("curves", curves_png(db)), ("cost", cost_png(db))):
            if png is not None:
                images[f"study-{i + 1}-{_slug(db.name)}-{kind}.png"] = png
    return images


def trial_table(trials: Sequence[Trial]) -> tuple[list[str], list[list[str]]]:
    """Trials with their error, counts and measured cost."""
    headers = ["trial", "error %", "epochs", "flops", "params", "acts", "train s", "images/s"]
    headers += ["peak memory", "device", "diverged"]
    rows = [
        [
            t.name,
            f"{t.error:.2f}" if t.error is not None else "n/a",
            str(t.epochs),
            fmt(t.flops),
            fmt(t.params),
            fmt(t.acts),
            fmt(t.train_seconds),
            fmt(t.images_per_second),
            fmt(t.peak_memory_bytes),
            t.device or "",
            {True: "yes", False: "no", None: "?"}[t.diverged],
        ]
        for t in trials
    ]
    return headers, rows


def study_html(dbs: Sequence[StudyDb], images: Mapping[str, bytes]) -> str:
    """The report section of the study databases: curves, cost pictures, trial tables."""
    e = html.escape
    parts = ["<h2>Training curves and measured cost</h2>"]
    for i, db in enumerate(dbs):
        counts = ", ".join(f"{v} {k}" for k, v in db.counts().items() if v)
        best, worst = extremes(db)
        parts += [
            f"<h3>{e(db.name)} ({e(str(db.path))}: {e(counts)})</h3>",
            _img(images, f"study-{i + 1}-{_slug(db.name)}-curves.png", "training curves"),
            _img(images, f"study-{i + 1}-{_slug(db.name)}-cost.png", "error against cost"),
            "<p class='note'>Best and worst trials: counts (paper convention) beside the "
            "measured training time, throughput and peak memory.</p>",
            _table(*trial_table([*best, *reversed(worst)])),
        ]
        failed = [t for t in db.trials if t.state == "failed"]
        if failed:
            items = "".join(f"<li>{e(t.name)}: {e(t.message or '')}</li>" for t in failed)
            parts.append(f"<p>Failed trials:</p><ul>{items}</ul>")
    return "\n".join(p for p in parts if p)


def summary_lines(dbs: Sequence[StudyDb]) -> list[str]:
    """Text lines for the terminal: per study, the best and worst trial with their cost."""
    lines: list[str] = []
    for db in dbs:
        best, worst = extremes(db, 1)
        if not best:
            continue
        for label, t in (("best", best[0]), ("worst", worst[0] if worst else None)):
            if t is None:
                continue
            lines.append(
                f"{db.name}: {label} {t.name}: {t.error:.2f} % in {fmt(t.train_seconds)} s "
                f"({fmt(t.images_per_second)} images/s, {fmt(t.flops)} flops)"
            )
    return lines


def as_dict(dbs: Sequence[StudyDb]) -> list[dict[str, Any]]:
    """JSON-ready per-study facts: counts and the best and worst trials with their cost."""
    out = []
    for db in dbs:
        best, worst = extremes(db)
        out.append(
            {
                "name": db.name,
                "db": str(db.path),
                "counts": db.counts(),
                "best": [_trial_dict(t) for t in best],
                "worst": [_trial_dict(t) for t in worst],
            }
        )
    return out


def _trial_dict(t: Trial) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "error": t.error,
        "flops": t.flops,
        "params": t.params,
        "acts": t.acts,
        "train_seconds": t.train_seconds,
        "images_per_second": t.images_per_second,
        "peak_memory_bytes": t.peak_memory_bytes,
        "curve": [dict(c) for c in t.curve],
    }
