"""Study inputs: result records (JSONL, CSV or a JSON list) joined with sample files, by space.

A record carries a metric column and either the design (the spec fields of a sample record:
depth, w0, wa, wm, ... or explicit ``stages``; with ``flops``, ``params``, ``acts`` or not)
or a sample ``id`` (or ``name``) that a sample file supplies the design for. Counts missing
from a record are computed from its design (paper convention, at its ``input_size`` or 224);
counts a file gives must be exactly its design's (an fvcore or torchvision count is named).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.complexity import count
from ..core.errors import RegNetSpaceError
from ..core.limits import DEFAULT_INPUT_SIZE
from ..core.loading import MAX_DIGITS, open_regular, parse_json
from ..core.loading import short as short_repr
from ..core.spec import ExplicitSpec, ParametricSpec, Spec, spec_from_dict
from ..space.bulk import count_specs
from .studydb import RECIPE_PREFIX, analysis_records, is_study_db, read_study_db

REGNET_FIELDS = ("depth", "w0", "wa", "wm", "group_width", "bottleneck_multiplier")
STAGE_KEYS = (("d", "depth"), ("w", "width"), ("g", "group_width"), ("bm", "bottleneck_multiplier"))
COMPLEXITY = ("flops", "params", "acts")
JOIN_KEYS = ("name", "id")  # a name (space-0001) is unique across sample files; an id is not
MAX_RESULTS_BYTES = 64 << 20
MAX_RESULTS_ROWS = 200_000
MAX_STAGE_COLUMNS = 16


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

    @property
    def n(self) -> int:
        return len(self.metric)


@dataclass(frozen=True)
class Study:
    """Models of one or more spaces and the metric compared (lower is better unless told)."""

    metric: str
    lower_is_better: bool
    spaces: tuple[SpaceModels, ...]
    parameters: tuple[str, ...]  # design parameters that vary within at least one space


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
            return parse_json(t, "cell", AnalysisError)
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
        with open_regular(p, "results", AnalysisError) as fh:
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
        obj = parse_json(line, f"{p}: line {i}", AnalysisError)
        if not isinstance(obj, dict):
            raise AnalysisError(f"{p}: line {i}: expected a JSON object per line")
        out.append(Record(f"{p}: line {i}", obj))
    return out


def _read_json_list(p: Path, text: str) -> list[Record]:
    data = parse_json(text, str(p), AnalysisError)
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def has_design(data: Mapping[str, Any]) -> bool:
    """True when a record carries a design (regnet parameters or explicit stages)."""
    return isinstance(data.get("stages"), list) or all(k in data for k in REGNET_FIELDS[:4])


def _metric(rec: Record, metric: str) -> float:
    if metric not in rec.data:
        raise AnalysisError(f"{rec.source}: no {metric!r} value")
    raw = rec.data[metric]
    value = _number(raw)
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
    v = _number(raw)
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
                    v = _number(st.get(key))
                    if v is not None:
                        out[f"{short}{i + 1}"] = v
    widths = data.get("widths")
    if isinstance(widths, list):
        out["num_stages"] = float(len(widths))
    for k, raw in data.items():  # training settings a study searched, e.g. recipe.base_lr
        v = _number(raw) if k.startswith(RECIPE_PREFIX) else None
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


def _read_db(p: Path, allow_synthetic: bool) -> list[Record]:
    rows = analysis_records(read_study_db(p), allow_synthetic)
    return [Record(f"{p}: trial {r['id']}", r) for r in rows]


def _unique_labels(paths: Sequence[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else str(p) for p in paths]


def load_study(
    results: Sequence[str | Path],
    *,
    metric: str = "error",
    samples: Sequence[str | Path] = (),
    labels: Sequence[str] = (),
    lower_is_better: bool = True,
    allow_synthetic: bool = False,
) -> Study:
    """Read result files (joined with sample files where needed) into a study, by space.

    A study database (`regnet-space study run`) is read directly: its finished trials, as
    `study export` writes them (synthetic-data trials only with allow_synthetic).
    Spaces: the given labels (one per results file), else a `space` column, else file names.
    Samples: none, one for every results file, or one per results file.
    """
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
    cache: dict[Path, list[Record]] = {}
    groups: dict[str, list[Record]] = {}
    defaults = _unique_labels(paths)
    for i, p in enumerate(paths):
        recs = _read_db(p, allow_synthetic) if is_study_db(p) else read_records(p)
        if metric not in recs[0].data:
            cols = ", ".join(list(recs[0].data)[:20])
            raise AnalysisError(
                f"{recs[0].source}: no column {metric!r} (columns: {cols}); name the metric "
                "with --metric"
            )
        if not has_design(recs[0].data):
            if not sample_paths:
                raise AnalysisError(
                    f"{p}: records carry no design (depth, w0, wa, wm or stages); give the "
                    "sample file with --samples"
                )
            sp = sample_paths[i]
            if sp not in cache:
                cache[sp] = read_records(sp)
            recs = _join(recs, cache[sp], str(p))
        for rec in recs:
            if labels:
                label = labels[i]
            elif rec.data.get("space") not in (None, ""):
                label = str(rec.data["space"])
            else:
                label = defaults[i]
            groups.setdefault(label, []).append(rec)
    return study_from_records(
        groups, metric=metric, lower_is_better=lower_is_better, check_counts=True
    )


def study_from_records(
    groups: Mapping[str, Sequence[Record | Mapping[str, Any]]],
    *,
    metric: str = "error",
    lower_is_better: bool = True,
    check_counts: bool = False,
) -> Study:
    """A study from records (plain mappings or read records) grouped by space label.

    Counts a record lacks are counted from its design; with `check_counts` (as load_study
    reads files), given ones must equal the design's too.
    """
    spaces = []
    for label, recs in groups.items():
        if not recs:
            continue
        rs = [r if isinstance(r, Record) else Record(f"{label}: record {i + 1}", r)
              for i, r in enumerate(recs)]  # fmt: skip
        for r in rs:
            if not has_design(r.data):
                raise AnalysisError(f"{r.source}: the record carries no design")
        values = [_metric(r, metric) for r in rs]
        params = [_parameters(r.data, r.source) for r in rs]
        comps = _complexities(rs, check_counts)
        keys = list(dict.fromkeys(k for p in params for k in p))
        columns = {k: tuple(p.get(k, math.nan) for p in params) for k in keys}
        spaces.append(
            SpaceModels(
                label=label,
                names=tuple(str(r.data.get("name") or r.source) for r in rs),
                metric=tuple(values),
                parameters=MappingProxyType(_collapse_shared(columns)),
                complexity=MappingProxyType({k: tuple(c[k] for c in comps) for k in COMPLEXITY}),
            )
        )
    if not spaces:
        raise AnalysisError("no records to analyze")
    return Study(metric, lower_is_better, tuple(spaces), _varying(spaces))


def _collapse_shared(columns: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    """Per-stage columns equal across all stages of every model become one (g1..g4 -> g)."""
    out = dict(columns)
    for short, key in STAGE_KEYS:
        names = [f"{short}{i}" for i in range(1, MAX_STAGE_COLUMNS + 1) if f"{short}{i}" in out]
        if len(names) < 2 or key in out:
            continue
        table = np.array([out[n] for n in names], dtype=np.float64)
        if np.isfinite(table).all() and (table == table[0]).all():
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
