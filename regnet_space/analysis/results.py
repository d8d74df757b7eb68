"""Analysis inputs: result records (JSONL, CSV or a JSON list) joined with sample files, by space.

A record carries a metric column and either the design (the spec fields of a sample record:
depth, w0, wa, wm, ... or explicit ``stages``; with ``flops``, ``params``, ``acts`` or not)
or a sample ``id`` (or ``name``) that a sample file supplies the design for. Counts missing
from a record are computed from its design (paper convention, at its ``input_size`` or 224);
counts a file gives must be exactly its design's (an fvcore or torchvision count is named).
Filters (`filters`) select records before anything else; a split field divides a space by
that field's values. Each input file's provenance (space, recipe, data, as far as the file
records them) travels with the result set for the report's header.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.complexity import count
from ..core.limits import DEFAULT_INPUT_SIZE
from ..core.spec import ExplicitSpec, ParametricSpec, Spec, spec_from_dict
from ..infra.errors import RegNetSpaceError
from ..infra.parsing import MAX_DIGITS, parse_json
from ..infra.reading import open_regular
from ..infra.text import short as short_repr
from ..space.bulk import count_specs
from .filters import Filter, as_number, parse_filter, resolve_field
from .studydb import (
    RECIPE_PREFIX,
    StudyDb,
    analysis_records,
    diverged_rule,
    is_study_db,
    read_study_db,
    scheduler_of,
    scheduler_text,
)

REGNET_FIELDS = ("depth", "w0", "wa", "wm", "group_width", "bottleneck_multiplier")
STAGE_KEYS = (("d", "depth"), ("w", "width"), ("g", "group_width"), ("bm", "bottleneck_multiplier"))
COMPLEXITY = ("flops", "params", "acts")
JOIN_KEYS = ("name", "id")  # a name (space-0001) is unique across sample files; an id is not
MAX_RESULTS_BYTES = 64 << 20
MAX_RESULTS_ROWS = 200_000
MAX_STAGE_COLUMNS = 16
NOT_RECORDED = "not recorded"


class AnalysisError(RegNetSpaceError, ValueError):
    """Analysis inputs that cannot be used: missing files or columns, bad or no values."""


@dataclass(frozen=True)
class SpaceModels:
    """The models of one design space: metric, design parameters and complexity, in order."""

    label: str
    names: tuple[str, ...]
    metric: tuple[float, ...]
    parameters: Mapping[str, tuple[float, ...]]  # parameter -> value per model (nan: absent)
    complexity: Mapping[str, tuple[float, ...]]  # flops, params, acts per model
    flags: tuple[str, ...] = ()  # per model: "", "diverged", "stopped", "stopped, diverged"

    @property
    def n(self) -> int:
        return len(self.metric)


@dataclass(frozen=True)
class InputFile:
    """Where some of a study's models came from and what that file records about them."""

    path: str
    kind: str  # "study database" or "results file"
    records: int  # records read (a database: its finished trials)
    labels: tuple[str, ...]  # the spaces its records went to
    facts: Mapping[str, str]  # space, recipe, data, ...: as recorded, or NOT_RECORDED


@dataclass(frozen=True)
class ResultSet:
    """Models of one or more spaces and the metric compared (lower is better unless told)."""

    metric: str
    lower_is_better: bool
    spaces: tuple[SpaceModels, ...]
    parameters: tuple[str, ...]  # design parameters that vary within at least one space
    unit: str = ""  # the metric's unit where known ("%": a study's top-1 test error)
    filters: tuple[str, ...] = ()  # the filters applied, as written
    split: str | None = None  # the field spaces were split by
    inputs: tuple[InputFile, ...] = ()
    notes: tuple[str, ...] = ()  # what a reader must know about the inputs (left out, flagged)


@dataclass(frozen=True)
class Record:
    """One input record and where it came from (for messages)."""

    source: str  # "file: line N"
    data: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Reading files


def _cell(text: str) -> Any:
    """A CSV cell as a number, a JSON list/object, None (empty) or the text itself."""
    t = text.strip()
    if not t:
        return None
    if t[0] == "'" and t[1:2] in ("=", "+", "-", "@"):
        return text.strip()[1:]  # a cell written text-safe for spreadsheets (csv_cell)
    if t[0] in "[{":
        try:
            return parse_json(t, "cell", error=AnalysisError)
        except AnalysisError:
            return text
    if len(t) <= MAX_DIGITS:
        for kind in (int, float):
            try:
                value = kind(t)
            except ValueError:
                continue
            return value if not isinstance(value, float) or math.isfinite(value) else text
    return text


def read_records(path: str | Path) -> list[Record]:
    """Records of a .jsonl, .csv or JSON-list file, each with its file and line for messages."""
    p = Path(path)
    try:
        with open_regular(p, "results", error=AnalysisError) as fh:
            raw = fh.read(MAX_RESULTS_BYTES + 1)
    except OSError as exc:
        raise AnalysisError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_RESULTS_BYTES:
        limit = MAX_RESULTS_BYTES >> 20
        raise AnalysisError(f"{p}: larger than {limit} MB, the most analyze reads")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AnalysisError(f"{p}: not UTF-8 text, expected JSONL or CSV") from None
    if "\0" in text:
        raise AnalysisError(f"{p}: binary data, expected JSONL or CSV")
    head = text.lstrip()[:1]
    if p.suffix.lower() == ".csv" or head not in ("{", "["):
        records = _read_csv(p, text)
    elif head == "[":
        records = _read_json_list(p, text)
    else:
        records = _read_jsonl(p, text)
    if not records:
        raise AnalysisError(f"{p}: no records")
    if len(records) > MAX_RESULTS_ROWS:
        raise AnalysisError(f"{p}: {len(records):,} records, more than {MAX_RESULTS_ROWS:,}")
    _refuse_duplicates(records)
    return records


def _refuse_duplicates(records: Sequence[Record]) -> None:
    """A model listed twice would count twice: refuse a repeated id or name within a file."""
    for key in JOIN_KEYS:
        seen: dict[str, str] = {}
        for r in records:
            if r.data.get(key) is None:
                continue
            k = str(r.data[key])
            if k in seen:
                raise AnalysisError(
                    f"{r.source}: {key} {short_repr(r.data[key])} appears twice (also {seen[k]}); "
                    "each model must be listed once"
                )
            seen[k] = r.source.rsplit(": ", 1)[-1]


def _read_jsonl(p: Path, text: str) -> list[Record]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if i > MAX_RESULTS_ROWS + 1:
            raise AnalysisError(f"{p}: more than {MAX_RESULTS_ROWS:,} records")
        obj = parse_json(line, f"{p}: line {i}", error=AnalysisError)
        if not isinstance(obj, dict):
            raise AnalysisError(f"{p}: line {i}: expected a JSON object per line")
        out.append(Record(f"{p}: line {i}", obj))
    return out


def _read_json_list(p: Path, text: str) -> list[Record]:
    data = parse_json(text, str(p), error=AnalysisError)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise AnalysisError(f"{p}: expected a JSON list of objects or one object per line")
    return [Record(f"{p}: record {i + 1}", r) for i, r in enumerate(data)]


def _read_csv(p: Path, text: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None:
            return []
        names = [h.strip() for h in header]
        if len(set(names)) != len(names) or not all(names):
            raise AnalysisError(f"{p}: line 1: the CSV header has empty or repeated names")
        out = []
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(out) >= MAX_RESULTS_ROWS:
                raise AnalysisError(f"{p}: more than {MAX_RESULTS_ROWS:,} records")
            line = reader.line_num
            if len(row) != len(names):
                raise AnalysisError(
                    f"{p}: line {line}: {len(row)} cells, the header has {len(names)}"
                )
            data = {k: _cell(v) for k, v in zip(names, row, strict=True)}
            out.append(Record(f"{p}: line {line}", data))
    except csv.Error as exc:
        raise AnalysisError(f"{p}: line {reader.line_num}: malformed CSV: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# One record -> numbers


def has_design(data: Mapping[str, Any]) -> bool:
    """True when a record carries a design (regnet parameters or explicit stages)."""
    return isinstance(data.get("stages"), list) or all(k in data for k in REGNET_FIELDS[:4])


def _metric(rec: Record, metric: str) -> float:
    if metric not in rec.data:
        raise AnalysisError(f"{rec.source}: no {metric!r} value")
    raw = rec.data[metric]
    value = as_number(raw)
    if value is None:
        raise AnalysisError(f"{rec.source}: {metric}: not a number: {short_repr(raw)}")
    if not math.isfinite(value):
        raise AnalysisError(f"{rec.source}: {metric}: not a finite number: {short_repr(raw)}")
    return value


def _spec_data(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    explicit = isinstance(data.get("stages"), list)
    fields = ExplicitSpec.model_fields if explicit else ParametricSpec.model_fields
    # input_size is passed to the counter on its own (a CSV may hold it as a float).
    spec = {k: v for k, v in data.items() if k in fields and v is not None and k != "input_size"}
    spec.setdefault("name", str(data.get("name") or source))
    spec.setdefault("block", "x")
    return spec


def _checked_number(data: Mapping[str, Any], key: str, source: str) -> float | None:
    """A numeric field: None when absent or empty; a one-line error when not a finite number."""
    raw = data.get(key)
    if raw is None or raw == "":
        return None
    v = as_number(raw)
    if v is None or not math.isfinite(v):
        raise AnalysisError(f"{source}: {key}: not a finite number: {short_repr(raw)}")
    return v


def _parameters(data: Mapping[str, Any], source: str = "<record>") -> dict[str, float]:
    out: dict[str, float] = {}
    for f in REGNET_FIELDS:
        if isinstance(data.get("stages"), list):
            break
        v = _checked_number(data, f, source)
        if v is not None:
            out[f] = v
    stages = data.get("stages")
    if isinstance(stages, list):
        for i, st in enumerate(stages[:MAX_STAGE_COLUMNS]):
            if isinstance(st, Mapping):
                for short, key in STAGE_KEYS:
                    v = as_number(st.get(key))
                    if v is not None:
                        out[f"{short}{i + 1}"] = v
    widths = data.get("widths")
    if isinstance(widths, list):
        out["num_stages"] = float(len(widths))
    for k, raw in data.items():  # training settings a study searched, e.g. recipe.base_lr
        v = as_number(raw) if k.startswith(RECIPE_PREFIX) else None
        if v is not None:
            out[k] = v
    return out


def _given_counts(rec: Record) -> dict[str, float | None]:
    """The flops, params and acts a record gives (None: absent), each finite and not negative."""
    values = {k: _checked_number(rec.data, k, rec.source) for k in COMPLEXITY}
    for k, v in values.items():
        if v is not None and v < 0:
            raise AnalysisError(
                f"{rec.source}: {k}: must not be negative, got {short_repr(rec.data[k])}"
            )
    return values


def _design(rec: Record) -> tuple[Spec, int]:
    """A record's design as a spec, and the input size it is counted at (default 224)."""
    size = rec.data.get("input_size") or DEFAULT_INPUT_SIZE
    try:
        return spec_from_dict(_spec_data(rec.data, rec.source), rec.source), int(size)
    except (RegNetSpaceError, TypeError, ValueError) as exc:
        raise AnalysisError(f"{rec.source}: cannot count the design: {exc}") from None


def _count_one(rec: Record, spec: Spec, size: int) -> dict[str, int]:
    try:
        c = count(spec, size)
    except (RegNetSpaceError, TypeError, ValueError) as exc:
        raise AnalysisError(f"{rec.source}: cannot count the design: {exc}") from None
    return {"flops": c.flops, "params": c.params, "acts": c.acts}


def _complexities(rs: Sequence[Record], check: bool) -> list[dict[str, float]]:
    """Flops, params and acts per record: those given, the rest counted from the design.

    With `check`, every record's design is counted and a given count that is not exactly
    the design's (paper convention, at the record's input size) is refused. Counting goes
    through the bulk path, a group of alike designs at a time.
    """
    given = [_given_counts(r) for r in rs]
    todo = [i for i, g in enumerate(given) if check or None in g.values()]
    designs = [_design(rs[i]) for i in todo]
    bulk = count_specs([spec for spec, _ in designs], [size for _, size in designs])
    out = [{k: v for k, v in g.items() if v is not None} for g in given]
    for j, i in enumerate(todo):
        counted = {k: int(getattr(bulk, k)[j]) for k in COMPLEXITY}
        if counted["flops"] < 0:  # left to the one-design path (which names a refusal)
            counted = _count_one(rs[i], *designs[j])
        for k in COMPLEXITY:
            value = given[i][k]
            if value is None:
                out[i][k] = float(counted[k])
            elif check and value != float(counted[k]):
                raise AnalysisError(_differs(rs[i], k, counted[k], *designs[j]))
    return out


def _differs(rec: Record, key: str, counted: int, spec: Spec, size: int) -> str:
    """Why a given count is refused: another convention's count, or just not the design's."""
    where = f"{rec.source}: {key} {short_repr(rec.data[key])}"
    paper = f"{counted:,} (paper convention, input size {size})"
    if key == "flops":
        value = float(rec.data[key])
        torchvision = count(spec, size, "torchvision").flops
        others = {
            "the fvcore convention": count(spec, size, "fvcore").flops,
            "the torchvision convention": torchvision,
            "PyTorch's FlopCounterMode (2 x torchvision)": 2 * torchvision,
        }
        for label, flops in others.items():
            if value == float(flops):
                return (
                    f"{where} is the design's count under {label}; analyze takes the paper "
                    f"convention's, {paper}: give that or leave flops out"
                )
    return f"{where} is not the design's count, {paper}; give that or leave {key} out"


# ---------------------------------------------------------------------------------------------
# Files -> study


def _join(results: list[Record], samples: list[Record], where: str) -> list[Record]:
    key = next((k for k in JOIN_KEYS if k in results[0].data and k in samples[0].data), None)
    key = key or next((k for k in JOIN_KEYS if k in results[0].data), None)
    if key is None:
        raise AnalysisError(
            f"{where}: records carry neither a design nor an id or name to join with the samples"
        )
    index: dict[str, Record] = {}
    for s in samples:
        if key in s.data:
            k = str(s.data[key])
            if k in index:
                raise AnalysisError(f"{s.source}: {key} {s.data[key]!r} appears twice")
            index[k] = s
    out = []
    for r in results:
        if key not in r.data:
            raise AnalysisError(f"{r.source}: no {key!r} to join with the samples")
        s = index.get(str(r.data[key]))
        if s is None:
            raise AnalysisError(
                f"{r.source}: {key} {short_repr(r.data[key])} is not in the samples"
            )
        for field in ("space", *JOIN_KEYS):
            if field in r.data and field in s.data and str(r.data[field]) != str(s.data[field]):
                raise AnalysisError(
                    f"{r.source}: joined by {key} to {s.source}, whose {field} "
                    f"{short_repr(s.data[field])} differs from {short_repr(r.data[field])}: "
                    "the wrong sample file for these results?"
                )
        out.append(Record(r.source, {**s.data, **r.data}))
    return out


def _db_records(db: StudyDb, allow_synthetic: bool, include_stopped: bool) -> list[Record]:
    rows = analysis_records(db, allow_synthetic, include_stopped)
    return [Record(f"{db.path}: trial {r['id']}", r) for r in rows]


def db_notes(db: StudyDb, include_stopped: bool) -> list[str]:
    """The stopped trials left out (or kept) and the diverged ones, one line each."""
    counts = db.counts()
    notes = []
    if counts["stopped"] and not include_stopped:
        notes.append(
            f"{db.path}: {counts['stopped']} trial(s) stopped early by the scheduler left out "
            "(not trained to the end; --include-stopped keeps them)"
        )
    elif counts["stopped"]:
        notes.append(
            f"{db.path}: {counts['stopped']} trial(s) stopped early by the scheduler included "
            "(--include-stopped): their errors are of fewer epochs"
        )
    flagged = [t for t in db.diverged() if t.state == "done" or include_stopped]
    if flagged:
        names = ", ".join(t.name for t in flagged[:10]) + (", ..." if len(flagged) > 10 else "")
        classes = db.meta.get("classes", "")
        rule = f" ({diverged_rule(int(classes))})" if classes.isdigit() else ""
        notes.append(
            f"{db.path}: {len(flagged)} trial(s) diverged{rule}: {names}; their errors "
            "measure the optimizer, not the design (--filter diverged!=true leaves them out)"
        )
    return notes


def study_facts(db: StudyDb) -> dict[str, str]:
    """What a study database records about its trials: space, recipe, data, constraints,
    scheduler, trials by state and the diverged ones."""
    try:
        study = json.loads(db.meta.get("study", ""))
    except json.JSONDecodeError:
        study = None
    if not isinstance(study, dict):
        return {"study": NOT_RECORDED}
    space, recipe = study.get("space") or {}, study.get("recipe") or {}
    data, search = study.get("data") or {}, study.get("search") or {}
    where = ", ".join(f"{k} {v}" for k, v in data.items() if k != "name" and v is not None)
    facts = {
        "study": f"{study.get('name', db.name)} (n = {study.get('n', '?')}, seed "
        f"{study.get('seed', '?')})",
        "space": f"{space.get('space', '?')} ({space.get('family', '?')})",
        "recipe": _recipe_text(recipe, search) if recipe else NOT_RECORDED,
        "data": f"{data.get('name', '?')}" + (f" ({where})" if where else ""),
        "input size": str(study.get("input_size", "?")),
        "constraints": ", ".join(f"{k} {v}" for k, v in (study.get("constraints") or {}).items())
        or "the space's own",
        "search": ", ".join(f"{k} {_search_text(v)}" for k, v in search.items()) or "none",
    }
    sched = scheduler_of(db.meta)
    if sched["kind"] != "none":
        facts["scheduler"] = scheduler_text(sched)
    counts = ", ".join(f"{v} {k}" for k, v in db.counts().items() if v)
    facts["trials"] = counts or "none"
    if any(t.diverged is not None for t in db.trials):
        flagged = db.diverged()
        shown = ", ".join(t.name for t in flagged[:10]) + (", ..." if len(flagged) > 10 else "")
        facts["diverged"] = f"{len(flagged)}: {shown}" if flagged else "none"
    else:
        facts["diverged"] = "not judged (a schema-1 database; `study run` upgrades it)"
    return facts


def _recipe_text(r: Mapping[str, Any], searched: Mapping[str, Any]) -> str:
    """Epochs, learning rate, batch and the usual stabilizers; searched fields say so."""

    def value(key: str) -> str:
        return "searched" if key in searched else str(r.get(key, "?"))

    batch, base_lr = r.get("batch_size"), r.get("base_lr")
    lr = f"base_lr {value('base_lr')}"
    fixed = not {"base_lr", "batch_size"} & set(searched)
    if fixed and isinstance(base_lr, (int, float)) and isinstance(batch, int):
        lr += f" (lr {base_lr * batch / 128:.3g})"
    parts = [f"{r.get('name', '?')}: epochs {value('epochs')}", f"batch {value('batch_size')}"]
    parts += [lr, f"weight decay {value('weight_decay')}"]
    if r.get("warmup_epochs"):
        parts.append(f"warmup {r['warmup_epochs']:g} epochs")
    if r.get("zero_init_last_bn"):
        parts.append("zero-init last BN")
    return ", ".join(parts)


def _search_text(p: Any) -> str:
    if isinstance(p, Mapping) and "values" in p:
        return "in " + ", ".join(map(str, p["values"]))
    if isinstance(p, Mapping):
        return f"{p.get('dist', '?')} {p.get('low', '?')}..{p.get('high', '?')}"
    return str(p)


def _file_facts(records: Sequence[Record]) -> dict[str, str]:
    """What a results file says about training: the epochs column if it has one."""
    epochs = sorted({str(r.data["epochs"]) for r in records if r.data.get("epochs") is not None})
    recipe = f"epochs {', '.join(epochs[:8])} (from the records); the rest {NOT_RECORDED}"
    return {
        "space": NOT_RECORDED,
        "recipe": recipe if epochs else NOT_RECORDED,
        "data": NOT_RECORDED,
    }


def _unique_labels(paths: Sequence[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else str(p) for p in paths]


def _input_paths(
    results: Sequence[str | Path], samples: Sequence[str | Path], labels: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """The results files and the sample file of each (none, or one per results file)."""
    paths = [Path(r) for r in results]
    if not paths:
        raise AnalysisError("no results files given")
    if labels and len(labels) != len(paths):
        raise AnalysisError(f"{len(labels)} space labels for {len(paths)} results files")
    if samples and len(samples) not in (1, len(paths)):
        raise AnalysisError(f"{len(samples)} sample files for {len(paths)} results files")
    sample_paths = [Path(s) for s in samples]
    if len(sample_paths) == 1:
        sample_paths *= len(paths)
    return paths, sample_paths


def _read_input(
    p: Path,
    metric: str,
    sample_path: Path | None,
    cache: dict[Path, list[Record]],
    db: StudyDb | None,
    allow_synthetic: bool,
    include_stopped: bool,
) -> tuple[list[Record], str, dict[str, str], list[str]]:
    """One results file's records (joined with its sample file when they carry no design),
    the kind of file, what it records about its models and what a reader must know (`db`:
    this study database, already read)."""
    notes: list[str] = []
    if db is not None or is_study_db(p):
        db = db if db is not None else read_study_db(p)
        recs = _db_records(db, allow_synthetic, include_stopped)
        kind, facts = "study database", study_facts(db)
        notes = db_notes(db, include_stopped)
    else:
        recs = read_records(p)
        kind, facts = "results file", _file_facts(recs)
    if metric not in recs[0].data:
        cols = ", ".join(list(recs[0].data)[:20])
        raise AnalysisError(
            f"{recs[0].source}: no column {metric!r} (columns: {cols}); name the metric "
            "with --metric"
        )
    if not has_design(recs[0].data):
        if sample_path is None:
            raise AnalysisError(
                f"{p}: records carry no design (depth, w0, wa, wm or stages); give the "
                "sample file with --samples"
            )
        if sample_path not in cache:
            cache[sample_path] = read_records(sample_path)
        recs = _join(recs, cache[sample_path], str(p))
    return recs, kind, facts, notes


def _label(rec: Record, given: str | None, default: str) -> str:
    """A record's space: the label given for its file, else its `space` column, else the
    file's name."""
    if given is not None:
        return given
    if rec.data.get("space") not in (None, ""):
        return str(rec.data["space"])
    return default


def load_study(
    results: Sequence[str | Path],
    *,
    metric: str = "error",
    samples: Sequence[str | Path] = (),
    labels: Sequence[str] = (),
    lower_is_better: bool = True,
    allow_synthetic: bool = False,
    filters: Sequence[str | Filter] = (),
    split: str | None = None,
    include_stopped: bool = False,
    databases: Sequence[StudyDb] = (),
) -> ResultSet:
    """Read result files (joined with sample files where needed) into a result set, by space.

    A study database (`regnet-space study run`) is read directly: its finished trials, as
    `study export` writes them (synthetic-data trials only with allow_synthetic; trials its
    scheduler stopped early only with include_stopped); one in `databases` (read already,
    matched by path) is not read again.
    Spaces: the given labels (one per results file), else a `space` column, else file names;
    with `split`, each space divided by that field's values ("LABEL FIELD=VALUE").
    Samples: none, one for all, or one per results file. Filters keep what passes them all.
    """
    parsed = [f if isinstance(f, Filter) else parse_filter(f) for f in filters]
    paths, sample_paths = _input_paths(results, samples, labels)
    cache: dict[Path, list[Record]] = {}
    groups: dict[str, list[Record]] = {}
    defaults = _unique_labels(paths)
    files: list[tuple[Path, str, list[Record], dict[str, str]]] = []
    notes: list[str] = []
    for i, p in enumerate(paths):
        sample_path = sample_paths[i] if sample_paths else None
        read = next((db for db in databases if db.path == p), None)
        recs, kind, facts, told = _read_input(
            p, metric, sample_path, cache, read, allow_synthetic, include_stopped
        )
        notes += told
        for rec in recs:
            label = _label(rec, labels[i] if labels else None, defaults[i])
            groups.setdefault(label, []).append(rec)
        files.append((p, kind, recs, facts))
    if split is not None:
        groups = _split(groups, split)
    study = study_from_records(
        groups,
        metric=metric,
        lower_is_better=lower_is_better,
        filters=parsed,
        check_counts=True,
    )
    percent = all(kind == "study database" for _, kind, _, _ in files)
    return replace(
        study,
        unit="%" if percent else _unit(metric, study),
        split=split,
        inputs=_inputs(files, groups),
        notes=tuple(notes),
    )


def _inputs(
    files: list[tuple[Path, str, list[Record], dict[str, str]]], groups: dict[str, list[Record]]
) -> tuple[InputFile, ...]:
    """Each input file: its kind, its records' count, the spaces they went to, its facts."""
    inputs = []
    for p, kind, recs, facts in files:
        mine = {id(r) for r in recs}
        own = tuple(label for label, rs in groups.items() if any(id(r) in mine for r in rs))
        inputs.append(InputFile(str(p), kind, len(recs), own, MappingProxyType(facts)))
    return tuple(inputs)


def _unit(metric: str, study: ResultSet) -> str:
    """Percent for an error or accuracy column whose values lie in 0..100, some above 1."""
    values = np.concatenate([np.asarray(s.metric) for s in study.spaces])
    named = any(word in metric.lower() for word in ("err", "acc", "top"))
    return "%" if named and values.min() >= 0 and 1 < values.max() <= 100 else ""


def _split(groups: Mapping[str, list[Record]], field: str) -> dict[str, list[Record]]:
    """Each space divided by the values of one field: "LABEL FIELD=VALUE" (pycls's
    SPLIT_FILTERS); records without the field go to "LABEL FIELD=none"."""
    columns = {k for rs in groups.values() for r in rs for k in r.data}
    key = resolve_field(field, columns, f"--split {field}")
    out: dict[str, list[Record]] = {}
    for label, rs in groups.items():
        values = {id(r): r.data.get(key) for r in rs}
        order = sorted(
            {_split_value(v) for v in values.values()},
            key=lambda v: (as_number(v) is None, as_number(v) or 0.0, v),
        )
        for v in order:
            out[f"{label} {field}={v}"] = [r for r in rs if _split_value(values[id(r)]) == v]
    return out


def _split_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _space_models(
    label: str,
    rs: list[Record],
    metric: str,
    checks: Sequence[tuple[Filter, str]],
    check_counts: bool,
) -> SpaceModels | None:
    """The models of one space that pass every filter (None when none does)."""
    for r in rs:
        if not has_design(r.data):
            raise AnalysisError(f"{r.source}: the record carries no design")
    params = [_parameters(r.data, r.source) for r in rs]  # names a bad field first
    comps = _complexities(rs, check_counts)
    if checks:
        passed = [
            all(f.matches({**r.data, **c, "space": label}, k) for f, k in checks)
            for r, c in zip(rs, comps, strict=True)
        ]
        rs = [r for r, ok in zip(rs, passed, strict=True) if ok]
        comps = [c for c, ok in zip(comps, passed, strict=True) if ok]
        params = [p for p, ok in zip(params, passed, strict=True) if ok]
    if not rs:
        return None
    keys = list(dict.fromkeys(k for p in params for k in p))
    columns = {k: tuple(p.get(k, math.nan) for p in params) for k in keys}
    flags = tuple(_flags(r.data) for r in rs)
    return SpaceModels(
        label=label,
        names=tuple(str(r.data.get("name") or r.source) for r in rs),
        metric=tuple(_metric(r, metric) for r in rs),
        parameters=MappingProxyType(_collapse_shared(columns)),
        complexity=MappingProxyType({k: tuple(c[k] for c in comps) for k in COMPLEXITY}),
        flags=flags if any(flags) else (),
    )


def study_from_records(
    groups: Mapping[str, Sequence[Record | Mapping[str, Any]]],
    *,
    metric: str = "error",
    lower_is_better: bool = True,
    filters: Sequence[str | Filter] = (),
    check_counts: bool = False,
) -> ResultSet:
    """A result set from records (plain mappings or read records) grouped by space label,
    keeping the records that pass every filter.

    Counts a record lacks are counted from its design; with `check_counts` (as load_study
    reads files), given ones must equal the design's too.
    """
    parsed = [f if isinstance(f, Filter) else parse_filter(f) for f in filters]
    read = {
        label: [
            r if isinstance(r, Record) else Record(f"{label}: record {i + 1}", r)
            for i, r in enumerate(recs)
        ]
        for label, recs in groups.items()
    }
    fields = {k for rs in read.values() for r in rs for k in r.data} | {*COMPLEXITY, "space"}
    checks = [(f, resolve_field(f.field, fields, f"--filter {f.text!r}")) for f in parsed]
    found = [_space_models(label, rs, metric, checks, check_counts) for label, rs in read.items()]
    spaces = [s for s in found if s is not None]
    if not spaces:
        total = sum(len(rs) for rs in read.values())
        if parsed and total:
            shown = "; ".join(str(f) for f in parsed)
            raise AnalysisError(f"no record of {total:,} passes the filters ({shown})")
        raise AnalysisError("no records to analyze")
    return ResultSet(
        metric,
        lower_is_better,
        tuple(spaces),
        _varying(spaces),
        filters=tuple(f.text for f in parsed),
    )


def _flags(data: Mapping[str, Any]) -> str:
    """A study trial's flags: stopped early by the scheduler, diverged."""
    flags = []
    if data.get("state") == "stopped":
        flags.append("stopped")
    if data.get("diverged") is True:
        flags.append("diverged")
    return ", ".join(flags)


def _collapse_shared(columns: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    """Per-stage columns equal across all stages of every model become one (g1..g4 -> g);
    a model with fewer stages (nan past its last) is judged on the stages it has."""
    out = dict(columns)
    for short, key in STAGE_KEYS:
        names = [f"{short}{i}" for i in range(1, MAX_STAGE_COLUMNS + 1) if f"{short}{i}" in out]
        if len(names) < 2 or key in out:
            continue
        table = np.array([out[n] for n in names], dtype=np.float64)
        has = np.isfinite(table)
        if has[0].all() and (~has | (table == table[0])).all():
            for n in names:
                del out[n]
            out[key] = tuple(table[0].tolist())
    return out


def _varying(spaces: Sequence[SpaceModels]) -> tuple[str, ...]:
    """Parameters with at least two distinct values within some space, in a stable order."""
    order = list(REGNET_FIELDS)
    for short, _ in STAGE_KEYS:
        order += [f"{short}{i}" for i in range(1, MAX_STAGE_COLUMNS + 1)]
    order.append("num_stages")
    found = set()
    for s in spaces:
        for k, v in s.parameters.items():
            a = np.asarray(v, dtype=np.float64)
            a = a[np.isfinite(a)]
            if a.size > 1 and np.ptp(a) > 0:
                found.add(k)
    order += sorted(k for k in found if k.startswith(RECIPE_PREFIX))
    return tuple(k for k in order if k in found)
