"""`regnet-space study run|status|export|best`: train every sampled design into a study
database and its storage folder of run folders; watch it, export it, take the best out.

`run` resolves the study file completely (space, designs, recipe, search, data) before the
database is created, so bad input is one line and nothing written; on Ray, Ray's own output
goes to a log file in the storage folder for the run (the CLI may redirect its process's
output; the library never does). `status`, `export` and `best` read the database (read-only,
also while a run is writing it); none of them imports torch, nor does the driver.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..infra.errors import OutputError
from ..infra.text import clean
from .args import COMMANDS
from .progress import Progress

RUN_DESCRIPTION = """\
Train every design of a study file under one recipe and record each result in the study
database (SQLite, one file; default: <study file stem>.db in the current folder). Each trial
trains into its own run folder (the format of `regnet-space train -o`) under the study's
storage folder (default: <db stem>.runs beside the database), so an interrupted trial resumes
from its last finished epoch wherever it runs next.

The study file (YAML) has exactly these keys: name; space (a space file relative to the study
file, or an inline space); n (designs; may rise on an existing database); seed; constraints
(overrides of the space's, the `sample` syntax: {flops: "4M:12M"}); recipe (a file or
inline); search (recipe fields drawn per trial: {lr: {dist: log_uniform, low: 0.05, high:
1.0}} or {field: {values: [...]}}); data ({name: digits|cifar10|cifar100|imagefolder|
synthetic, root: PATH}); executor ({kind: local, workers: 2} or {kind: ray, address: auto,
cpus_per_trial: 4, gpus_per_trial: 1}); retries (attempts after a failure, default 0);
storage (the folder of the run folders); keep (weights kept once trials end: all, none or
best-K; default best-5); trial_timeout (minutes an attempt may take; default none);
scheduler (early stopping, default {kind: none}: {kind: asha, grace_epochs: 1,
reduction_factor: 4} or {kind: median, grace_epochs: 1, min_samples: 3}, Ray Tune's ASHA and
median stopping rules judged by this driver on each finished epoch; a stopped trial is
recorded `stopped` with its curve so far). Designs are sampled (and counted) at the recipe's
test size.

Rerunning on an existing database resumes it: finished trials are kept, pending, interrupted
and failed-with-retries-left trials run again, from their last epoch; a raised n adds the
next designs of the same sample; a database of a different study is refused (executor,
retries, storage, keep and trial_timeout may change between runs, nothing else: not the
scheduler, whose recorded decisions a resumed run keeps). One driver holds a database at a
time (a second gets exit status 2 naming the holder). Each event is committed on its own, so
Ctrl-C or kill -9 loses no finished trial, epoch or decision.
Several study files (the design-space progression: examples/progression/*.yaml) are all
checked first, then run one after another, each into <its stem>.db in the current folder.
Exit status: 0 when every trial is done (or stopped early), 1 when some failed or remain, 2
for bad input."""

RUN_EPILOG = """\
examples:
  regnet-space study run examples/study-digits.yaml
  regnet-space study run examples/study-digits.yaml --workers 2 --db runs/digits.db
  regnet-space study run examples/study-cifar10.yaml --executor ray --address auto
  regnet-space study run examples/progression/*.yaml     # six studies, six databases"""


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 1024:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 1024, got {text!r}")
    return int(text)


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 4096):
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 4096, got {text!r}")
    return int(value) if value.is_integer() else value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `study` command group (run, status, export, best) to a CLI's subparsers."""
    study = subparsers.add_parser(
        "study",
        help=COMMANDS["study"],
        description="Design-space studies: train every sampled design, locally or on Ray, "
        "into one SQLite database; watch it and export it.",
        epilog="Run `regnet-space study COMMAND --help` for each command's options.",
    )
    sub = study.add_subparsers(dest="study_command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser(
        "run",
        help="run (or resume) a study",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
    )
    r.add_argument(
        "study_files",
        nargs="+",
        metavar="STUDYFILE",
        help="study file (YAML); several run one after another, each into <stem>.db",
    )
    r.add_argument(
        "--db", metavar="PATH", help="study database (one STUDYFILE; default: <STUDYFILE stem>.db)"
    )
    r.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where trials run (default: the study file's executor, else local)",
    )
    r.add_argument(
        "--address",
        metavar="ADDR",
        help="ray: cluster to join (auto, host:port or ray://host:10001); none starts a local Ray",
    )
    r.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local: worker processes (default: the study file's, else 1)",
    )
    r.add_argument(
        "--cpus-per-trial",
        type=_positive_number,
        metavar="C",
        help="ray: CPUs per trial, also its torch threads (default: the study file's, else 1)",
    )
    r.add_argument(
        "--gpus-per-trial",
        type=_positive_number,
        metavar="G",
        help="ray: GPUs per trial (default: the study file's, else 0)",
    )
    r.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object, a list of them for several STUDYFILEs "
        "(Ray's own output goes to a log file)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress line, no summary text")
    r.set_defaults(func=run_run)

    s = sub.add_parser(
        "status",
        help="trials by state, live trials, best trials, failures, ETA",
        description="Counts of trials by state (pending, running, done, failed, stopped: "
        "ended early by the study's scheduler), the driver holding the database (or none: its "
        "running trials were interrupted), each running trial's last finished epoch, the best "
        "trials, failures and retried trials with the message of every failed attempt, the "
        "trials that diverged, and an ETA. Reads the database read-only, also while a run "
        "writes it.",
    )
    s.add_argument("db", metavar="DB", help="study database")
    s.add_argument("--top", type=_positive_int, default=5, metavar="K", help="best trials shown")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=run_status)

    e = sub.add_parser(
        "export",
        help="every trial as JSONL or CSV",
        description="One record per trial: every `sample` record field (id, spec fields, "
        "input_size, widths, depths, group_widths, flops, params, acts), the sampled recipe "
        "fields (recipe.NAME), error (top-1 %%), epochs, train_seconds, images_per_second, "
        "state (done, stopped, ...), attempts, peak_memory_bytes, device, host, synthetic, "
        "message, diverged (the training loss blew up; empty: not judged) and curve "
        "(per-epoch metrics). The format follows the -o suffix (.csv, else JSONL).",
    )
    e.add_argument("db", metavar="DB", help="study database")
    e.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output file, or - for stdout"
    )
    e.add_argument(
        "--format", choices=("jsonl", "csv"), help="output format (default: from OUT's suffix)"
    )
    e.add_argument("--force", action="store_true", help="overwrite OUT")
    e.set_defaults(func=run_export)

    b = sub.add_parser(
        "best",
        help="the best trials' spec, recipe, weights and result",
        description="Copy the best K finished trials' spec.yaml, recipe.yaml, "
        "model.safetensors and result.json out of the study's storage: into DIR for K = 1, "
        "into one folder per trial (1-trial-00012/, ...) for K > 1, with best.json listing "
        "them; all or nothing. `regnet-space build DIR/spec.yaml` builds the design, and "
        "regnet_space.study.trainer.load_weights(DIR) gives the trained model.",
    )
    b.add_argument("db", metavar="DB", help="study database")
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    b.add_argument("--top", type=_positive_int, default=1, metavar="K", help="best trials (1)")
    b.add_argument(
        "--storage", metavar="DIR", help="the study's storage folder (default: as recorded)"
    )
    b.add_argument("--force", action="store_true", help="replace DIR's earlier result")
    b.add_argument("--json", action="store_true", help="print what was written as JSON")
    b.set_defaults(func=run_best)


# ---------------------------------------------------------------------------------------------
# run


def _executor(args: argparse.Namespace, configured: Any) -> Any:
    from pydantic import ValidationError

    from ..core.validation import format_errors
    from ..study.errors import StudyError
    from ..study.studyfile import LocalExecutorConfig, RayExecutorConfig

    kind = args.executor or configured.kind
    ray_flags = {
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
    }
    ray_flags = {k: v for k, v in ray_flags.items() if v is not None}
    if kind == "ray":
        if args.workers is not None:
            raise StudyError("--workers is for the local executor; Ray uses --cpus-per-trial")
        base = (
            configured
            if isinstance(configured, RayExecutorConfig)
            else RayExecutorConfig(kind="ray")
        )
        try:
            return RayExecutorConfig.model_validate({**base.model_dump(), **ray_flags})
        except ValidationError as exc:
            raise StudyError(f"ray executor: {format_errors(exc, RayExecutorConfig)}") from None
    if args.address is not None or ray_flags:
        raise StudyError("--address and --*-per-trial are for the ray executor (--executor ray)")
    base = (
        configured
        if isinstance(configured, LocalExecutorConfig)
        else LocalExecutorConfig(kind="local")
    )
    if args.workers is not None:
        return base.model_copy(update={"workers": args.workers})
    return base


def duration(seconds: float | None) -> str:
    """1h02m, 3m05s or 12s."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def run_run(args: argparse.Namespace) -> int:
    """Resolve every study file, then run or resume each in turn."""
    from ..study.driver import check_executor
    from ..study.errors import StudyError
    from ..study.studyfile import default_db_path, resolve

    files = args.study_files
    if args.db and len(files) > 1:
        raise StudyError("--db names one database: with several study files each writes "
                         "<study file stem>.db in the current folder")  # fmt: skip
    dbs = [Path(args.db) if args.db else default_db_path(f) for f in files]
    for i, db in enumerate(dbs):
        if db in dbs[:i]:
            raise StudyError(f"{files[dbs.index(db)]} and {files[i]} would both write {db}")
    # Every file is checked (space, designs, recipe, data, executor) before the first runs.
    plans = []
    for f, db in zip(files, dbs, strict=True):
        study = resolve(f)
        executor = _executor(args, study.file.executor)
        check_executor(executor.kind)  # imports Ray before its output is routed away
        plans.append((study, executor, db))
    summaries = []
    for study, executor, db in plans:
        if executor.kind != "ray":
            summary = _run_with_progress(study, db, executor, args, sys.stderr, None)
        else:
            with _ray_output_to(study.storage(db)) as (terminal, log):
                summary = _run_with_progress(study, db, executor, args, terminal, log)
        summaries.append(summary)
        if not args.json:
            _print_summary(study.name, summary, db, args)
    if args.json:
        out = [_summary_dict(s) for s in summaries]
        sys.stdout.write(json.dumps(out[0] if len(out) == 1 else out) + "\n")
    return 0 if all(s.done + s.stopped == s.total for s in summaries) else 1


def _run_with_progress(
    study: Any, db: Path, executor: Any, args: Any, stream: Any, ray_log: Path | None
) -> Any:
    from ..study.driver import RunProgress, run_study

    # Terminal only (quiet in pipes and with --quiet). The ETA is the driver's: from this
    # run's trial times and parallelism, so trials finished by an earlier run do not skew it.
    bar = Progress(study.name, stream=stream, enabled=not args.quiet)

    def announce(db: Path, storage: Path) -> None:
        if not args.quiet:
            extra = f"; Ray's own output: {ray_log}" if ray_log is not None else ""
            stream.write(f"{study.name}: database {db}, storage {storage}{extra}\n")
            stream.flush()

    def show(p: RunProgress) -> None:
        stopped = f", {p.stopped} stopped" if p.stopped else ""
        bar.step(
            f"{p.done}/{p.total} done{stopped}, {p.failed} failed, {p.running} running, "
            f"ETA {duration(p.eta)}"
        )

    try:
        return run_study(
            study,
            db,
            executor,
            address=args.address,
            progress=show if bar.tty else None,
            announce=announce,
        )
    finally:
        bar.done()


@contextlib.contextmanager
def _ray_output_to(storage: Path) -> Iterator[tuple[Any, Path]]:
    """Ray's own output (its processes' and its driver code's, on stdout and stderr) goes to
    <storage>/ray.log while the run goes on; ours goes to the stream this yields (stderr).
    A run refused before it started leaves no storage folder behind."""
    from ..infra.text import SafeStream

    created = not storage.exists() and storage.parent.is_dir()
    log = storage / "ray.log"
    try:
        if created:
            storage.mkdir()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"{log}: cannot write: {(exc.strerror or str(exc)).lower()}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    before = sys.stderr
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stderr = SafeStream(terminal)  # type: ignore[assignment]
    try:
        yield sys.stderr, log
    except BaseException:
        if created and os.listdir(storage) == [log.name]:
            log.unlink()
            storage.rmdir()
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stderr = before
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        terminal.close()


def _summary_dict(summary: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(summary).items()}


def _print_summary(name: str, summary: Any, db: Path, args: argparse.Namespace) -> None:
    if args.quiet:
        return
    stopped = f", {summary.stopped} stopped early" if summary.stopped else ""
    head = (
        f"{name}: {summary.done}/{summary.total} done{stopped}, {summary.failed} failed, "
        f"{summary.pending} not run; "
    )
    if summary.slots == 0:
        head += "nothing to run\n"
    else:
        overhead = summary.wall_seconds * summary.slots - summary.train_seconds
        head += (
            f"{summary.attempts} attempt(s) this run in {duration(summary.wall_seconds)} on "
            f"{summary.executor} (up to {summary.slots} at once, {summary.threads} thread(s) "
            f"each)\n  outside training: {overhead / max(1, summary.attempts):.2f} "
            "slot-seconds per attempt (start-up, data loading, model building)\n"
        )
    sys.stdout.write(
        head + f"  database: {db}   (regnet-space study status {db})\n"
        f"  storage: {summary.storage}   (regnet-space study best {db} -o best/)\n"
    )


# ---------------------------------------------------------------------------------------------
# status


def run_status(args: argparse.Namespace) -> int:
    """Print the counts, driver, live trials, best trials, failures and ETA of a study."""
    from ..study.monitor import read_status

    st = read_status(args.db, args.top)
    if args.json:
        sys.stdout.write(json.dumps(st) + "\n")
        return 0
    sys.stdout.write("\n".join(_status_lines(st)) + "\n")
    return 0


def _status_lines(st: dict[str, Any]) -> list[str]:
    from .render import render_table

    head = (
        f"{st['name']} ({st['db']}): {st['total']} trials: {st['done']} done, "
        f"{st['running']} running, {st['pending']} pending, {st['failed']} failed"
    )
    if st["stopped"] or st["scheduler"]["kind"] != "none":
        head += f", {st['stopped']} stopped early"
    if st["eta_seconds"] is not None:
        head += f"; ETA {duration(st['eta_seconds'])}"
    lines = [clean(head)]
    if st["scheduler"]["kind"] != "none":
        from ..analysis.studydb import scheduler_text

        lines.append(clean(f"scheduler: {scheduler_text(st['scheduler'])}"))
    driver = st["driver"]
    if driver is not None:
        lines.append(f"driver: pid {driver['pid']} on {driver['host']}, "
                     f"since {_clock(driver['since'])}")  # fmt: skip
    else:
        lines.append(f"no driver; {st['interrupted']} trials were interrupted"
                     if st["interrupted"] else "no driver")  # fmt: skip
    if st["live"]:
        rows = [
            [str(r["id"]), f"{r['epoch']}/{r['epochs']}", f"{r['error']:.2f}",
             duration(r["seconds"]), f"{r['host']} (pid {r['pid']})"]
            for r in st["live"]
        ]  # fmt: skip
        headers = ["id", "epoch", "error %", "elapsed", "worker"]
        lines += ["", "running:", render_table(headers, rows, markdown=False).rstrip()]
    if st["best"]:
        lines += ["", f"best {len(st['best'])}:", _best_table(st["best"])]
    lines += _failure_lines(st)
    if st["diverged"]:
        ids = ", ".join(str(d["id"]) for d in st["diverged"])
        rule = f" ({st['diverged_rule']})" if st["diverged_rule"] else ""
        lines.append(clean(f"diverged: {len(st['diverged'])} trial(s){rule}: {ids}"))
    return lines


def _clock(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _best_table(best: list[dict[str, Any]]) -> str:
    from .render import render_table

    rows = [
        [
            str(b["id"]),
            b["name"],
            f"{b['error']:.2f}",
            f"{b['flops'] / 1e6:.2f}",
            f"{b['params'] / 1e6:.3f}",
            f"{b['train_seconds']:.1f}",
            f"{b['images_per_second']:.0f}",
        ]
        for b in best
    ]
    headers = ["id", "name", "error %", "MF", "M params", "train s", "images/s"]
    searched = list(dict.fromkeys(k for b in best for k in b.get("recipe", {})))
    headers += searched
    for row, b in zip(rows, best, strict=True):
        row += [f"{b.get('recipe', {}).get(k, '')}" for k in searched]
    return render_table(headers, rows, markdown=False).rstrip()


def _failure_lines(st: dict[str, Any]) -> list[str]:
    lines = []
    for f in st["failures"]:
        lines.append(clean(f"failed: trial {f['id']} ({f['attempts']} attempt(s)): {f['message']}"))
        lines += [clean(f"  attempt {h['attempt']}: {h['message']}") for h in f["history"][:-1]]
    if st["failed"] > len(st["failures"]):
        lines.append(f"... and {st['failed'] - len(st['failures'])} more failed trials")
    for r in st["retried"]:
        lines.append(f"retried: trial {r['id']} ({r['state']} after {r['attempts']} attempt(s))")
        lines += [clean(f"  attempt {h['attempt']}: {h['message']}") for h in r["history"]]
    return lines


# ---------------------------------------------------------------------------------------------
# export


def run_export(args: argparse.Namespace) -> int:
    """Write every trial of a study database as JSONL or CSV."""
    from ..infra.outputs import atomic_write_text
    from ..infra.paths import check_target
    from ..study.export import csv_text, jsonl_lines
    from ..study.monitor import read_status

    stdout = args.output == "-"
    if not stdout:
        check_target(args.output, args.force)
    fmt = args.format or ("csv" if not stdout and args.output.lower().endswith(".csv") else "jsonl")
    text = csv_text(args.db) if fmt == "csv" else "".join(jsonl_lines(args.db))
    if stdout:
        sys.stdout.write(text)
        return 0
    atomic_write_text(args.output, text, args.force)
    st = read_status(args.db, 0)
    states = ("pending", "running", "interrupted", "done", "stopped", "failed")
    counts = ", ".join(f"{st[k]} {k}" for k in states if st[k])
    sys.stderr.write(clean(f"wrote {args.output}: {st['total']} trial(s) ({counts})") + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# best


def run_best(args: argparse.Namespace) -> int:
    """Copy the best trials' files out of the study's storage."""
    from ..study.best import find_best, write_best

    best = find_best(Path(args.db), args.top, Path(args.storage) if args.storage else None)
    write_best(best, Path(args.output), args.force)
    if args.json:
        sys.stdout.write(
            json.dumps({"output": args.output, "trials": [t.as_dict() for t in best]}) + "\n"
        )
        return 0
    for t in best:
        where = Path(args.output) / t.sub if t.sub else Path(args.output)
        line = f"{t.rank}. trial {t.id} ({t.name}): {t.error:.2f} % -> {where}/"
        sys.stdout.write(clean(line) + "\n")
    return 0
