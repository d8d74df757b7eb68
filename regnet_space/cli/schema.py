"""`regnet-space schema`: the JSON Schema of the spec format, for editors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .args import COMMANDS


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the spec format."""
    from ..core.spec import spec_json_schema

    sys.stdout.write(json.dumps(spec_json_schema(), indent=2) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add `schema` to the command's subparsers."""
    s = sub.add_parser(
        "schema",
        help=COMMANDS["schema"],
        description="Print the JSON Schema of the spec file format (both forms), for editors.",
    )
    s.set_defaults(func=cmd_schema)
