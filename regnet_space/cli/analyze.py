"""`regnet-space analyze`: compare design spaces from trained samples (results or studies).

Never imports torch; matplotlib only when `analyze` draws pictures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..infra.text import clean
from .args import COMMANDS, JSON_HELP, int_in, unit_float

ANALYZE_DESCRIPTION = """\
Compare design spaces from trained samples. Each RESULTS file (.jsonl, .csv or a JSON list)
holds one record per model with a metric column (--metric, lower is better unless
--higher-is-better) and either the design (the fields of a `regnet-space sample` record:
depth, w0, wa, wm, ... or stages; flops/params/acts are counted when absent) or a sample id
joined with the sample file given by --samples.

Computes per space: the metric's EDF, plain and complexity-normalized (models weighted so
that every space has the same flops distribution: uniform over log-spaced bins of the shared
range, "On Network Design Spaces for Visual Recognition"); bootstrap good ranges of each
design parameter (the best model of 2,500 resamples of 25 %, 2.5/50/97.5 percentiles); and
Spearman rank correlations of the metric with each parameter and with flops, params, acts.
Spaces are the --space-label values (one per RESULTS), else a `space` column, else file names.

For every pair of spaces: a two-sample KS test of the metric (scipy), the same on the
complexity-normalized EDFs (p-value by a bootstrap within complexity bins, the weights kept),
and the difference a - b at the EDF's 10th, 25th and 50th percentiles with bootstrap 95 %
intervals, in the metric's units (percent points for a study's error). EDFs carry 95 % DKW
bands; a good range is shown only where it spans at most half of the observed range, else
"not resolved at n = ..."; fewer than 100 models in a space is a one-line warning on stderr.

--pairs adjacent compares each space with the one before it instead (the paper's
progression: analyze a.db b.db c.db --pairs adjacent compares a-b and b-c).

--filter FIELD<OP>VALUE (repeatable; all must hold) keeps the records that pass before
anything else, like pycls's PRE_FILTERS: OP is < <= > >= == !=; FIELD a column (a recipe
field by its own name: base_lr finds recipe.base_lr), flops, params, acts or space; VALUE a
number (4e8, 400M) or a word. --split FIELD divides each space by that field's values, like
pycls's SPLIT_FILTERS ("RegNetX epochs=10", "RegNetX epochs=50").

A RESULTS file may be a study database (`regnet-space study run`): its finished trials are
read directly, and the report adds the training curves of the best and worst trials and
their measured cost (train seconds, images/s) beside flops, params and acts. Trials trained
on synthetic data are refused unless --allow-synthetic; trials its scheduler stopped early
are left out (they were not trained to the end; one line on stderr says how many) unless
--include-stopped; trials whose training loss diverged are flagged (stderr, the report's
header and trial table; --filter diverged!=true leaves them out).

With -o DIR: report.html (self-contained, PNGs embedded; it states each input's space,
recipe, data, n and the filters, and lists every model in a sortable table), the PNGs and
results.json. The tests need scipy, the pictures matplotlib: pip install
'regnet-space[analysis]' (or [plot], the same). Each RESULTS file is read up to 64 MB and
200,000 records (regular files only); a repeated id or name is refused."""

ANALYZE_EPILOG = """\
examples:
  regnet-space analyze examples/zoo_errors.csv -o zoo_report
  regnet-space analyze study-digits.db -o report
  regnet-space analyze x.jsonl y.jsonl --space-label RegNetX --space-label RegNetY -o out
  regnet-space analyze runs.csv --samples x.jsonl --metric top1_err --json
  regnet-space analyze acc.csv --metric acc --higher-is-better --no-plots -o out
  regnet-space analyze a.db b.db --filter "flops<4e8" --filter "epochs==10" --json
  regnet-space analyze sweep.db --split base_lr -o by_lr
  regnet-space analyze anynetx-cifar-?.db regnetx-cifar.db --pairs adjacent -o progression"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `analyze` to the command's subparsers."""
    a = subparsers.add_parser(
        "analyze",
        help=COMMANDS["analyze"],
        description=ANALYZE_DESCRIPTION,
        epilog=ANALYZE_EPILOG,
    )
    a.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results files (.jsonl, .csv, JSON list), or a shipped example's name",
    )
    a.add_argument("--metric", default="error", help="metric column (default: error)")
    a.add_argument(
        "--higher-is-better", action="store_true", help="the metric is better higher (accuracy)"
    )
    a.add_argument(
        "--space-label",
        action="append",
        default=[],
        metavar="LABEL",
        help="space name of each RESULTS file, in order (repeat once per file)",
    )
    a.add_argument(
        "--samples",
        action="append",
        default=[],
        metavar="FILE",
        help="sample file(s) for results that carry only an id: one for all or one per file",
    )
    a.add_argument("-o", "--output", metavar="DIR", help="write report.html, PNGs, results.json")
    a.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty DIR, replacing the files this command writes there",
    )
    a.add_argument("--json", action="store_true", help=JSON_HELP)
    a.add_argument("--no-plots", action="store_true", help="tables-only report, no matplotlib")
    a.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0, help="bootstrap seed (0)")
    a.add_argument(
        "--resamples", type=int_in(1, 1_000_000), default=2500, help="bootstrap draws (2500)"
    )
    a.add_argument(
        "--fraction", type=unit_float, default=0.25, help="share of models per draw (0.25)"
    )
    a.add_argument(
        "--bins",
        type=int_in(1, 1000),
        default=None,
        help="complexity bins of the normalization (default: sqrt of the smallest space, <= 10)",
    )
    a.add_argument(
        "--normalize-by",
        choices=("flops", "params", "acts"),
        default="flops",
        help="complexity the normalized EDFs equalize (default: flops)",
    )
    a.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="analyze study trials trained on synthetic data (speed runs, not accuracy)",
    )
    a.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="EXPR",
        dest="filters",
        help="keep records where FIELD OP VALUE holds, e.g. 'flops<4e8' (repeat: all must hold)",
    )
    a.add_argument(
        "--split", metavar="FIELD", help="divide each space by the values of FIELD (e.g. epochs)"
    )
    a.add_argument(
        "--pairs",
        choices=("all", "adjacent"),
        default="all",
        help="spaces compared: every pair (default), or each with the one before it in the "
        "order given (a progression: A B C ... compares A-B, B-C, ...)",
    )
    a.add_argument(
        "--include-stopped",
        action="store_true",
        help="keep the trials a study's scheduler stopped early (left out by default: they "
        "were not trained to the end)",
    )
    a.set_defaults(func=run_analyze)


# ---------------------------------------------------------------------------------------------
# analyze


def run_analyze(args: argparse.Namespace) -> int:
    """Load, analyze, write the report and print the tables (or JSON)."""
    from ..analysis.compare import ks_2samp
    from ..analysis.filters import parse_filter
    from ..analysis.plots import prepare_dir, require_matplotlib, write_report
    from ..analysis.results import load_study
    from ..analysis.stats import analyze
    from ..core.presets import resolve

    args.results = [str(resolve(r, "example")) for r in args.results]
    _refuse_specs(args.results)
    filters = [parse_filter(f) for f in args.filters]
    plots = args.output is not None and not args.no_plots
    if plots:
        require_matplotlib()
    ks_2samp()  # scipy present, before any work
    if args.output is not None:
        prepare_dir(args.output, args.force)
    dbs = _study_dbs(args.results)  # read once: for the analysis and the study report
    study = load_study(
        args.results,
        metric=args.metric,
        samples=args.samples,
        labels=args.space_label,
        lower_is_better=not args.higher_is_better,
        allow_synthetic=args.allow_synthetic,
        filters=filters,
        split=args.split,
        include_stopped=args.include_stopped,
        databases=dbs,
    )
    result = analyze(
        study,
        seed=args.seed,
        resamples=args.resamples,
        fraction=args.fraction,
        bins=args.bins,
        normalize_by=args.normalize_by,
        pairs=args.pairs,
    )
    data, extra_images, extra_html = _results_data(result, study, dbs, plots)
    written: list[Path] = []
    if args.output is not None:
        written = write_report(
            study,
            result,
            args.output,
            force=args.force,
            plots=plots,
            json_text=json.dumps(data, indent=1) + "\n",
            sources=args.results,
            extra_images=extra_images,
            extra_html=extra_html,
        )
    _print_results(args, result, study, data, dbs, written)
    return 0


def _results_data(
    result: Any, study: Any, dbs: Sequence[Any], plots: bool
) -> tuple[dict[str, Any], dict[str, bytes], str]:
    """results.json's data, and the study databases' pictures and report section."""
    data = result.to_dict() | {"filters": list(study.filters), "split": study.split}
    data["notes"] = [*study.notes, *data["notes"]]
    data["inputs"] = [
        {"path": f.path, "kind": f.kind, "records": f.records, "spaces": list(f.labels)}
        | {"facts": dict(f.facts)}
        for f in study.inputs
    ]
    extra_images: dict[str, bytes] = {}
    extra_html = ""
    if dbs:
        from ..analysis import studyreport

        data["studies"] = studyreport.as_dict(dbs)
        extra_images = studyreport.draw_study(dbs) if plots else {}
        extra_html = studyreport.study_html(dbs, extra_images)
    return data, extra_images, extra_html


def _print_results(
    args: argparse.Namespace,
    result: Any,
    study: Any,
    data: dict[str, Any],
    dbs: Sequence[Any],
    written: list[Path],
) -> None:
    """The notes and warnings on stderr, then the tables (or --json) on stdout."""
    for note in study.notes:  # stopped trials left out, diverged ones: said once, on stderr
        sys.stderr.write(clean(f"analyze: note: {note}") + "\n")
    for warning in result.warnings:  # with the results: a failed run says one line only
        sys.stderr.write(f"analyze: warning: {warning}\n")
    if args.json:
        sys.stdout.write(json.dumps(data | {"outputs": [str(p) for p in written]}) + "\n")
    else:
        text = _analysis_text(result, study, args.results, written)
        if dbs:
            from ..analysis.studyreport import summary_lines

            text += "".join(f"{clean(line)}\n" for line in summary_lines(dbs))
        sys.stdout.write(text)


def _refuse_specs(paths: Sequence[str]) -> None:
    """A spec or space file given as results gets a pointer to the right command."""
    from ..analysis.results import AnalysisError
    from ..core.spec import is_space_file

    for path in paths:
        if Path(path).suffix in (".yaml", ".yml") and Path(path).is_file():
            kind = "a design-space file" if is_space_file(path) else "a spec file"
            raise AnalysisError(
                f"{path}: {kind}; analyze expects results of trained models (.jsonl, .csv or "
                "a JSON list with a metric column); see `report` for a spec's counts and "
                "`sample` to draw designs"
            )


def _study_dbs(paths: Sequence[str]) -> list[Any]:
    """The study databases among the RESULTS files, read once more for curves and cost."""
    from ..analysis.studydb import is_study_db, read_study_db

    return [read_study_db(p) for p in paths if is_study_db(p)]


def _analysis_text(result: Any, study: Any, sources: Sequence[str], written: list[Path]) -> str:
    from ..analysis.stats import (
        RESOLVED_SHARE,
        comparison_table,
        correlation_table,
        difference_table,
        fmt,
        range_table,
        space_table,
    )
    from .render import render_table

    a = result
    better = "lower" if a.lower_is_better else "higher"
    total = sum(s.n for s in study.spaces)
    edges = a.bin_edges
    norm = (
        f"{len(edges) - 1} log-spaced {a.normalize_by} bin(s), {fmt(edges[0])} .. {fmt(edges[-1])}"
        if edges
        else "no shared complexity range"
    )
    unit = f" ({study.unit})" if study.unit else ""
    lines = [
        clean(
            f"{a.metric}{unit} ({better} is better): {total} models in {len(study.spaces)} "
            f"space(s) from {', '.join(sources)}"
        ),
    ]
    if study.filters:
        lines.append(clean(f"filters: {'; '.join(study.filters)}"))
    lines += [
        "",
        "EDF summary (norm.: weighted to a common complexity distribution over " + norm + "; "
        "norm. n: models with a positive weight; band: 95 % DKW half-width of the EDF)",
        render_table(*space_table(a), markdown=False),
    ]
    if a.comparisons:
        which = "pairs" if a.pairs == "all" else "each space against the one before it"
        lines += [
            f"{which}: two-sample KS of {a.metric}, plain and complexity-normalized (bootstrap "
            f"within bins, {a.resamples:,} draws, seed {a.seed})",
            render_table(*comparison_table(a), markdown=False),
            f"difference a - b at the EDF's percentiles, {a.metric}{unit}, bootstrap 95 % "
            "intervals",
            render_table(*difference_table(a), markdown=False),
        ]
    lines += [
        f"good ranges: the best model of {a.resamples:,} resamples of {a.fraction:.0%} "
        f"(seed {a.seed}), 2.5-97.5 percentiles of its parameter; shown where they span at most "
        f"{RESOLVED_SHARE:.0%} of the observed range",
        render_table(*range_table(a), markdown=False) if a.good_ranges else "  (none vary)\n",
        f"rank correlation (Spearman) of {a.metric} with (all: pooled, variables every space has)",
        render_table(*correlation_table(a), markdown=False),
    ]
    lines += [clean(f"note: {n}") for n in a.notes]
    if written:
        pngs = sum(p.suffix == ".png" for p in written)
        report = next(p for p in written if p.name == "report.html")
        lines.append(clean(f"wrote {report} ({pngs} PNG(s) embedded and beside it, results.json)"))
    return "\n".join(lines).rstrip() + "\n"
