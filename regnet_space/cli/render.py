"""Spec summaries (analytic, no model built) and the tables the commands print: text, CSV,
JSON or Markdown."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.complexity import Complexity, Convention, count_plan
from ..core.errors import SpecError
from ..core.generator import Plan, make_plan
from ..core.limits import Format
from ..core.presets import SPEC_SUFFIXES, resolve
from ..core.reader import load_spec
from ..core.spec import Spec, is_space_file
from ..infra.text import clean, csv_cell


@dataclass(frozen=True)
class SpecSummary:
    """One spec resolved and counted: what a report row and `build --json` are made of."""

    source: str
    spec: Spec
    plan: Plan
    counts: Complexity

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable summary (counts are integers, in the counts' convention)."""
        p = self.plan
        return {
            "name": p.name,
            "spec": self.source,
            "block": p.block,
            "widths": list(p.widths),
            "depths": list(p.depths),
            "group_widths": list(p.group_widths),
            "bottleneck_widths": list(p.bottleneck_widths),
            "strides": list(p.strides),
            "stem_stride": p.stem_stride,
            "flops": self.counts.flops,
            "params": self.counts.params,
            "acts": self.counts.acts,
            "convention": self.counts.convention,
            "input_size": p.input_size,
        }


def summarize(
    spec: Spec, source: str, input_size: int | None, convention: Convention
) -> SpecSummary:
    """Resolve and count one spec (at its own input size unless `input_size` is given)."""
    p = make_plan(spec, input_size)
    return SpecSummary(source, spec, p, count_plan(p, convention))


@dataclass(frozen=True)
class SpecFiles:
    """What a list of files and folders holds: spec files, design-space files, problems."""

    specs: tuple[Path, ...]
    skipped: tuple[Path, ...]  # design-space files met in folders
    missing: tuple[str, ...]  # one-line messages, each naming its path


def find_spec_files(inputs: Iterable[str | Path], recursive: bool = False) -> SpecFiles:
    """Expand folders to their *.yaml/*.yml files (sorted; all levels with `recursive`).

    Design-space files in folders are set aside as skipped: they live beside specs but are
    not specs. A name that is no file here may be a shipped spec (`y040`).
    """
    specs: list[Path] = []
    skipped: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        p = resolve(str(item), "spec")
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(c for c in p.glob(pattern) if c.suffix in SPEC_SUFFIXES and c.is_file())
            spaces = [c for c in found if is_space_file(c)]
            skipped += spaces
            found = [c for c in found if c not in spaces]
            if not found:
                missing.append(f"{p}: no spec files (*.yaml, *.yml) in this folder")
            specs.extend(found)
        elif p.exists():
            specs.append(p)
        else:
            missing.append(f"{p}: no such file or folder")
    return SpecFiles(tuple(specs), tuple(skipped), tuple(missing))


def collect_spec_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand folders to their spec files (not recursive, sorted); the first problem raises."""
    files = find_spec_files(inputs)
    if files.missing:
        raise SpecError(files.missing[0])
    return list(files.specs)


def summarize_paths(
    inputs: Iterable[str | Path], input_size: int | None, convention: Convention
) -> list[SpecSummary]:
    """Load, resolve and count every spec named by `inputs` (files or folders)."""
    return [
        summarize(load_spec(p), str(p), input_size, convention) for p in collect_spec_paths(inputs)
    ]


# ---------------------------------------------------------------------------------------------
# Rendering


def human_count(value: int, unit: str) -> str:
    """`4.0 GF`, `12.5 MF`, `20.6 M params`, `960.0 K params`: the prefix that fits the value.

    A unit without a leading space joins the prefix (F -> GF); one with a space follows it.
    """
    for prefix, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:,} {unit.strip()}"


def _join(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Aligned text table (numbers right-aligned) or a GitHub Markdown table.

    A cell is one line: control characters in it (a newline in a name) are shown escaped, and
    in Markdown a `|` is escaped too.
    """
    headers = [clean(h) for h in headers]
    rows = [[clean(c) for c in r] for r in rows]
    numeric = [
        all(r[i].replace(".", "", 1).replace("-", "", 1).isdigit() for r in rows if r[i])
        for i in range(len(headers))
    ]
    if markdown:
        sep = ["---:" if n else "---" for n in numeric]
        lines = [[c.replace("|", "\\|") for c in r] for r in [headers, sep, *rows]]
        return "\n".join("| " + " | ".join(r) + " |" for r in lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(r: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths), *map(fmt, rows)]) + "\n"


def render_report(summaries: Sequence[SpecSummary], fmt: Format) -> str:
    """One row per spec in the chosen format."""
    if fmt == "json":
        import json

        return json.dumps([s.as_dict() for s in summaries], indent=2) + "\n"
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        keys = list(summaries[0].as_dict()) if summaries else ["name"]
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for s in summaries:
            writer.writerow(
                {
                    k: _join(v) if isinstance(v, list) else csv_cell(v) if isinstance(v, str) else v
                    for k, v in s.as_dict().items()
                }
            )
        return buf.getvalue()
    conv = summaries[0].counts.convention if summaries else "paper"
    headers = ["spec", "name", "block", "widths", "depths", "group widths", "GF", "M params"]
    headers.append("M acts")
    rows = [
        [
            s.source,
            s.plan.name,
            s.plan.block,
            _join(s.plan.widths),
            _join(s.plan.depths),
            _join(s.plan.group_widths),
            f"{s.counts.flops / 1e9:.3f}",
            f"{s.counts.params / 1e6:.2f}",
            f"{s.counts.acts / 1e6:.2f}",
        ]
        for s in summaries
    ]
    sizes = sorted({s.plan.input_size for s in summaries}) or [224]
    at = f"{sizes[0]}x{sizes[0]}" if len(sizes) == 1 else "input sizes " + _join(sizes)
    note = f"{len(rows)} spec(s) at {at}, {conv} convention (1 flop = 1 multiply-add)\n"
    if fmt == "markdown":
        return render_table(headers, rows, markdown=True) + "\n" + note
    return render_table(headers, rows, markdown=False) + note
