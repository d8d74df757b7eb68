"""How sampled designs are written: their names, spec file names, JSONL and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence

from ..infra.text import csv_cell
from .records import DesignRecord


def _slug(space_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", space_name).strip("._") or "design"


def design_name(space_name: str, n: int, sample_id: int) -> str:
    """Name of design `sample_id` of n from a space: the space's name and a padded id."""
    return f"{_slug(space_name)}-{sample_id:0{max(4, len(str(n - 1)))}d}"


def tried_name(space_name: str, draw: int) -> str:
    """Name of a rejected design shown among the closest: the space's name and its draw."""
    return f"{_slug(space_name)}-try{draw}"


def spec_file_names(space_name: str, n: int) -> list[str]:
    """File names of the spec files of n designs (`--specs-dir`), in sample id order."""
    return [f"{design_name(space_name, n, i)}.yaml" for i in range(n)]


def records_to_jsonl(records: Sequence[DesignRecord]) -> str:
    """One JSON object per line (floats in their shortest round-trip form)."""
    return "".join(json.dumps(r.to_dict()) + "\n" for r in records)


def records_to_csv(records: Sequence[DesignRecord]) -> str:
    """A header and one row per record; lists (and stage lists) as compact JSON cells."""
    if not records:
        return ""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rows = [r.to_dict() for r in records]
    writer.writerow(rows[0])
    for row in rows:
        writer.writerow(
            csv_cell(v) if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for v in row.values()
        )
    return buf.getvalue()
