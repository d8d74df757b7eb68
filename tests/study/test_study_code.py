"""The study side's code stays small enough to change in one place: no function over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "regnet_space"
STUDY_SIDE = [
    *sorted((ROOT / "study").glob("*.py")),
    ROOT / "cli" / "study.py",
    ROOT / "cli" / "train.py",
]
MAX_LINES = 60


def test_no_function_of_the_study_side_is_over_60_lines() -> None:
    long = []
    for path in STUDY_SIDE:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name == "register":  # argparse registration: one call per option
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES:
                long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
