"""`regnet-space analyze`, `scale` and `fit`: design-space analysis, model scaling, fitting.

Never imports torch; matplotlib only when `analyze` draws pictures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import RegNetSpaceError
from ..core.text import clean
from .args import (
    FORCE_HELP,
    INPUT_SIZE_HELP,
    JSON_HELP,
    SPEC_HELP,
    STDIO,
    check_output,
    input_size,
    int_in,
    load_spec_argument,
    write_output,
)

if TYPE_CHECKING:
    from ..core.spec import Spec

DEFAULT_TOLERANCE = 10.0  # percent: how far `scale` may miss the asked flop factor

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

SCALE_DESCRIPTION = """\
Scale a spec's flops by S with the rules of "Fast and Accurate Model Scaling" (pycls's
scaler): depth x S**e_d, width x S**(e_w/2), resolution x S**(e_r/2) with e_d + e_w + e_r = 1,
then re-quantize (depth to an integer, widths to multiples of 8 or q, group width to 1, 2, 4
or a multiple of 8, input size to a multiple of 4). A parametric spec stays parametric (d,
w0, wa and the group width scaled, wm kept); an explicit one is scaled stage by stage. When
rounding misses the flop factor by more than 2 %, nearby widths (+-15 %) and depths (+-1)
are tried (--no-correct: pycls's rounding only). The new input size is the scaled spec's
`input_size` field, which report, build and export use. A result that misses the asked
factor by more than --tolerance (10 %) is reported on stderr and in --json and exits 1
without writing OUT, unless --allow-miss. Without -o (or with -o -) the scaled spec is the
output on stdout and the summary goes to stderr."""

SCALE_EPILOG = """\
examples:
  regnet-space scale specs/y040.yaml --flops-factor 4 -o y040x4.yaml
  regnet-space scale y040 --flops-factor 4 > y040x4.yaml
  regnet-space scale specs/x002.yaml --flops-factor 16 --weights dw -o x002x16.yaml
  regnet-space scale specs/y040.yaml --flops-factor 2 --alpha 1.0 --json

weights: d1_w8_g8_r1 (default: fast compound scaling, e_d = e_r = 0.1, e_w = 0.8, group width
like width), or letters such as d, w, dw, dwr (equal shares); --alpha A: e_w = A,
e_d = e_r = (1 - A) / 2."""

FIT_DESCRIPTION = """\
Fit the RegNet parameters d, w0, wa, wm to per-block widths: those of SPEC (parametric or
explicit; its group width, bottleneck multiplier, q and rounding are used) or a --widths
list. d is the number of blocks; w0, wa, wm minimize the paper's fitting error e_fit = mean
over blocks of |log(w_fit / w)|, where w_fit are the widths the quantized linear rule and
the block-compatibility rule generate. e_fit = 0 means the parameters regenerate every
width. The fitted parametric spec (the source's input_size kept) is written to -o, or
printed on stdout with the summary on stderr."""

FIT_EPILOG = """\
examples:
  regnet-space fit specs/y040.yaml
  regnet-space fit --widths 24,56,152x4,368x7 -o fitted.yaml
  regnet-space fit --widths 256x3,512x4,1024x6,2048x3 --bottleneck-multiplier 0.25 \\
      --group-width 64 --json"""


# ---------------------------------------------------------------------------------------------
# Argument types


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a percentage of at least 0, got {text!r}")
    return value


def _unit_float(text: str) -> float:
    value = _positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Registration


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `analyze`, `scale` and `fit` subcommands to a CLI's subparsers."""
    a = subparsers.add_parser(
        "analyze",
        help="compare design spaces: EDFs, good ranges, rank correlations, HTML report",
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
        "--fraction", type=_unit_float, default=0.25, help="share of models per draw (0.25)"
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

    s = subparsers.add_parser(
        "scale",
        help="scale a model's flops by the rules of 'Fast and Accurate Model Scaling'",
        description=SCALE_DESCRIPTION,
        epilog=SCALE_EPILOG,
    )
    s.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    s.add_argument(
        "--flops-factor", type=_positive_float, required=True, metavar="S", help="flop factor"
    )
    how = s.add_mutually_exclusive_group()
    how.add_argument("--weights", metavar="W", help="scaling weights (default d1_w8_g8_r1)")
    how.add_argument("--alpha", type=_unit_float, metavar="A", help="width share e_w (0..1)")
    s.add_argument("--input-size", type=input_size, metavar="N", help="source's " + INPUT_SIZE_HELP)
    s.add_argument("--no-correct", action="store_true", help="pycls's rounding only")
    s.add_argument(
        "--tolerance",
        type=_percent,
        default=DEFAULT_TOLERANCE,
        metavar="PCT",
        help=f"largest miss of the flop factor, in percent (default {DEFAULT_TOLERANCE:g})",
    )
    s.add_argument(
        "--allow-miss",
        action="store_true",
        help="write the scaled spec and exit 0 even when it misses the tolerance",
    )
    s.add_argument(
        "-o", "--output", metavar="OUT", help="write the scaled spec (YAML); - for stdout"
    )
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.set_defaults(func=run_scale)

    f = subparsers.add_parser(
        "fit",
        help="fit d, w0, wa, wm to per-block widths (a spec's or a list)",
        description=FIT_DESCRIPTION,
        epilog=FIT_EPILOG,
    )
    f.add_argument("spec", nargs="?", metavar="SPEC", help=SPEC_HELP)
    f.add_argument("--widths", metavar="LIST", help="per-block widths: 24,56,152x4,368x7")
    f.add_argument("--group-width", type=int_in(1, 1 << 20), metavar="G", help="default: q")
    f.add_argument("--bottleneck-multiplier", type=_positive_float, metavar="BM", help="default: 1")
    f.add_argument("--q", type=int_in(1, 4096), metavar="Q", help="width quantum (default 8)")
    f.add_argument("--rounding", choices=("pycls", "torchvision"), help="default: pycls")
    f.add_argument("--block", choices=("x", "y"), default="x", help="block of --widths (x)")
    f.add_argument("--name", default="fitted", help="name of the spec fitted to --widths")
    f.add_argument(
        "-o", "--output", metavar="OUT", help="write the fitted spec (YAML); - for stdout"
    )
    f.add_argument("--force", action="store_true", help=FORCE_HELP)
    f.add_argument("--json", action="store_true", help=JSON_HELP)
    f.set_defaults(func=run_fit)


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
    )
    dbs = _study_dbs(args.results)
    result = analyze(
        study,
        seed=args.seed,
        resamples=args.resamples,
        fraction=args.fraction,
        bins=args.bins,
        normalize_by=args.normalize_by,
        pairs=args.pairs,
    )
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
    return 0


def _refuse_specs(paths: Sequence[str]) -> None:
    """A spec or space file given as results gets a pointer to the right command."""
    from ..analysis.results import AnalysisError
    from ..core.loading import is_space_file

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
    from ..core.report import render_table

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


# ---------------------------------------------------------------------------------------------
# scale


def _scale_problems(scaled: Any, tolerance: float) -> list[str]:
    """What a user must know about a scaled design: a missed target, a lost stage, a size."""
    from ..core.generator import plan
    from ..core.limits import MAX_BUILD_PARAMS

    problems = []
    if abs(scaled.miss) * 100 > tolerance:
        problems.append(
            f"missed the flop factor: asked x{scaled.asked:g}, achieved x{scaled.achieved:.3g} "
            f"({100 * scaled.miss:+.1f} %, tolerance {tolerance:g} %)"
        )
    before, after = plan(scaled.source, scaled.input_size_before), plan(scaled.spec)
    if before.num_stages != after.num_stages:
        problems.append(f"stages: {before.num_stages} -> {after.num_stages}")
    if scaled.params > MAX_BUILD_PARAMS:
        problems.append(
            f"{scaled.params:,} parameters: over the build limit of {MAX_BUILD_PARAMS:,} "
            "(build and export need --allow-large)"
        )
    return problems


def run_scale(args: argparse.Namespace) -> int:
    """Scale a spec and write (or show) the new one; exit 1 on a miss beyond the tolerance."""
    from ..space.scaling import scale_spec, scaled_spec_text

    spec, _ = load_spec_argument(args.spec)
    to_stdout = args.output is None or args.output == STDIO
    if args.output == STDIO and args.json:
        raise RegNetSpaceError("-o - and --json both write stdout; give -o FILE with --json")
    check_output(args.output, args.force)
    scaled = scale_spec(
        spec,
        args.flops_factor,
        weights=args.weights,
        alpha=args.alpha,
        input_size=args.input_size,
        correct=not args.no_correct,
    )
    problems = _scale_problems(scaled, args.tolerance)
    missed = abs(scaled.miss) * 100 > args.tolerance
    write = not missed or args.allow_miss
    for problem in problems:
        sys.stderr.write(f"scale: {problem}\n")
    if missed and not args.allow_miss:
        sys.stderr.write("scale: nothing written (--allow-miss keeps such a result)\n")
    text = scaled_spec_text(scaled)
    written = None
    if write and not (args.output is None and args.json):
        written = write_output(args.output or STDIO, text, args.force)
    status = 1 if missed and not args.allow_miss else 0
    if args.json:
        out = scaled.as_dict() | {"output": written, "tolerance_percent": args.tolerance}
        out |= {"miss_percent": 100 * scaled.miss, "on_target": not missed}
        out |= {"problems": problems}
        sys.stdout.write(json.dumps(out) + "\n")
        return status
    sys.stderr.write(_scale_text(scaled, spec, written) if to_stdout else "")
    if not to_stdout:
        sys.stdout.write(_scale_text(scaled, spec, written))
    return status


def _scale_text(scaled: Any, spec: Spec, written: str | None) -> str:
    from ..core.report import render_table
    from ..core.spec import ParametricSpec

    f = scaled.factors
    rows = [
        _spec_row("before", spec, scaled.input_size_before),
        _spec_row("after", scaled.spec, scaled.input_size),
    ]
    headers = ["", "depths", "widths", "group widths", "input", "GF", "M params", "M acts"]
    lines = [
        clean(f"{spec.name} -> {scaled.spec.name}  (weights {scaled.weights})"),
        f"multipliers: depth x{f.depth:.3f}, width x{f.width:.3f}, group width "
        f"x{f.group_width:.3f}, resolution x{f.resolution:.3f}",
    ]
    for label, s in (("before", spec), ("after", scaled.spec)):
        if isinstance(s, ParametricSpec):
            lines.append(
                f"{label:>6}: d={s.depth} w0={s.w0} wa={s.wa:g} wm={s.wm:g} g={s.group_width}"
            )
    lines += [
        "",
        render_table(headers, rows, markdown=False).rstrip(),
        "",
        f"flop factor: asked x{scaled.asked:g}, achieved x{scaled.achieved:.3f} "
        f"({100 * scaled.miss:+.1f} %)",
        f"input size: {scaled.input_size} (the scaled spec's input_size field)",
    ]
    if written is not None and written != "stdout":
        lines.append(clean(f"wrote {written}"))
    return "\n".join(lines) + "\n"


def _spec_row(label: str, spec: Spec, size: int) -> list[str]:
    from ..core.complexity import count
    from ..core.generator import plan

    p = plan(spec, size)
    c = count(p)

    def join(v: Sequence[int]) -> str:
        return ",".join(map(str, v))

    return [
        label,
        join(p.depths),
        join(p.widths),
        join(p.group_widths),
        str(size),
        f"{c.flops / 1e9:.3f}",
        f"{c.params / 1e6:.2f}",
        f"{c.acts / 1e6:.2f}",
    ]


# ---------------------------------------------------------------------------------------------
# fit


def run_fit(args: argparse.Namespace) -> int:
    """Fit d, w0, wa, wm and print (and write) the result."""
    from ..core.generator import plan
    from ..core.loading import yaml_comment
    from ..core.spec import ParametricSpec, dump_spec, spec_from_dict
    from ..space.fitting import FitError, fit_widths, parse_widths, shared_block_options

    if (args.spec is None) == (args.widths is None):
        raise FitError("give a SPEC or --widths (one of them)")
    to_stdout = args.output is None or args.output == STDIO
    if args.output == STDIO and args.json:
        raise FitError("-o - and --json both write stdout; give -o FILE with --json")
    check_output(args.output, args.force)
    notes: list[str] = []
    base: dict[str, Any]
    if args.spec is not None:
        spec, _ = load_spec_argument(args.spec)
        widths = [s.width for s in plan(spec).stages for _ in range(s.depth)]
        if isinstance(spec, ParametricSpec):
            q, g, bm, rounding = spec.q, spec.group_width, spec.bottleneck_multiplier, spec.rounding
        else:
            q, rounding = 8, "pycls"
            g, bm = shared_block_options(spec)
            if g is None:
                notes.append("stages differ in bottleneck multiplier: widths fitted as they are")
            if any(stride != 2 for stride in spec.strides()[1:]):
                notes.append("the spec has stride-1 stages; a parametric spec strides every stage")
        base = _base_fields(spec)
        source = f"{spec.name} ({args.spec})"
    else:
        widths = list(parse_widths(args.widths))
        q, g, bm, rounding = 8, None, 1.0, "pycls"
        base = {"name": args.name, "block": args.block}
        source = "--widths"
    q = args.q if args.q is not None else q
    g = args.group_width if args.group_width is not None else g
    bm = args.bottleneck_multiplier if args.bottleneck_multiplier is not None else bm
    rounding = args.rounding or rounding
    fit = fit_widths(widths, q=q, group_width=g, bottleneck_multiplier=bm, rounding=rounding)
    fields = {
        "depth": fit.depth,
        "w0": fit.w0,
        "wa": fit.wa,
        "wm": fit.wm,
        "group_width": fit.group_width,
        "bottleneck_multiplier": fit.bottleneck_multiplier,
        "q": fit.q,
        "rounding": fit.rounding,
    }
    fitted_spec = spec_from_dict({**base, **fields}, "fitted spec")
    header = yaml_comment(
        f"fitted by regnet-space fit to {source}: e_fit = {fit.error:.6g}"
        f"{' (exact)' if fit.exact else ''}"
    )
    written = None
    if args.output is not None or not args.json:
        written = write_output(args.output or STDIO, header + dump_spec(fitted_spec), args.force)
    if args.json:
        out = fit.as_dict() | {"notes": notes, "output": written}
        out["spec"] = fitted_spec.model_dump(mode="json")
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    summary = _fit_text(fit, source, notes, None if to_stdout else written)
    (sys.stderr if to_stdout else sys.stdout).write(summary)
    return 0


def _base_fields(spec: Spec) -> dict[str, Any]:
    keep = {"name", "block", "se_ratio", "stem_width", "num_channels", "num_classes"}
    keep |= {"activation", "downsample_in_first_stage", "input_size", "stem"}
    return spec.model_dump(mode="json", include=keep)


def _runs(widths: Sequence[int]) -> str:
    out: list[list[int]] = []
    for w in widths:
        if out and out[-1][0] == w:
            out[-1][1] += 1
        else:
            out.append([w, 1])
    return ", ".join(f"{w}x{n}" if n > 1 else str(w) for w, n in out)


def _fit_text(fit: Any, source: str, notes: list[str], output: str | None) -> str:
    bm = f"{fit.bottleneck_multiplier:g}"
    lines = [
        clean(f"fit to {fit.depth} per-block widths of {source}"),
        f"(group width {fit.group_width}, bottleneck multiplier {bm}, q {fit.q}, "
        f"{fit.rounding} rounding)",
        "",
        f"  d = {fit.depth}   w0 = {fit.w0}   wa = {fit.wa:g}   wm = {fit.wm:g}",
        "",
        f"e_fit = {fit.error:.6g} (mean |log(w_fit / w)| over blocks)"
        + (": exact, every width regenerated" if fit.exact else ""),
        f"  given:  {_runs(fit.target)}",
        f"  fitted: {_runs(fit.fitted)}",
    ]
    lines += [f"note: {n}" for n in notes]
    if output is not None:
        lines.append(clean(f"wrote {output}"))
    return "\n".join(lines) + "\n"
