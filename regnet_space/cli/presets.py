"""`regnet-space list`: the shipped zoo specs, design spaces and example data."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .args import COMMANDS, JSON_HELP

DESCRIPTION = """\
The specs, design spaces and example data shipped with the package. Their names work in
place of a path anywhere a file is expected when no such file exists here: `regnet-space
report y040`, `regnet-space sample regnety -n 3 -o -`. Flops and params are the paper
convention at each spec's input size."""


def register(subparsers: Any) -> None:
    """Add `list` to the CLI's subparsers."""
    p = subparsers.add_parser("list", help=COMMANDS["list"], description=DESCRIPTION)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=run_list)


def _rows() -> list[dict[str, Any]]:
    from ..core.complexity import count
    from ..core.presets import presets
    from ..core.reader import load_spec

    rows = []
    for preset in presets():
        row: dict[str, Any] = {"name": preset.name, "kind": preset.kind, "flops": None}
        row |= {"params": None, "file": str(preset.path)}
        if preset.kind == "spec":
            c = count(load_spec(preset.path))
            row |= {"flops": c.flops, "params": c.params}
        rows.append(row)
    return rows


def run_list(args: argparse.Namespace) -> int:
    """Print the shipped files as a table (or JSON)."""
    from ..infra.errors import RegNetSpaceError
    from .render import human_count, render_table

    rows = _rows()
    if not rows:
        raise RegNetSpaceError("no shipped specs found: the package data is missing")
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    table = [
        [
            r["name"],
            r["kind"],
            "" if r["flops"] is None else human_count(r["flops"], "F"),
            "" if r["params"] is None else human_count(r["params"], " params"),
            r["file"],
        ]
        for r in rows
    ]
    headers = ["name", "kind", "flops", "params", "file"]
    sys.stdout.write(render_table(headers, table, markdown=False))
    return 0
