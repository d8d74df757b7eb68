"""No function of the package is longer than 60 lines, outside argparse registration.

A function's length is counted from its `def` line to its last line, docstring, comments and
blank lines included (nested functions count within their parent, and on their own). Exempt:
functions named `register`, the commands' argparse registration, which is a flat list of
`add_argument` calls whose length is the number of options, not the logic's.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "regnet_space"
MAX_LINES = 60
EXEMPT = {"register"}


def _long_functions(package: Path = PACKAGE) -> dict[str, int]:
    """module path:function name -> lines, for every function over MAX_LINES."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES and node.name not in EXEMPT:
                found[f"{path.relative_to(package).as_posix()}:{node.name}"] = lines
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    assert _long_functions() == {}


def test_the_walk_finds_long_functions_nested_and_in_classes(tmp_path: Path) -> None:
    def function(name: str, lines: int, indent: str = "") -> str:
        body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
        return f"{indent}def {name}():\n{body}"

    (tmp_path / "side").mkdir()
    (tmp_path / "side" / "m.py").write_text(
        function("fits", MAX_LINES)
        + function("too_long", MAX_LINES + 1)
        + function("register", MAX_LINES + 5)
        + "class C:\n"
        + function("method", MAX_LINES + 2, "    ")
    )
    assert _long_functions(tmp_path) == {
        "side/m.py:too_long": MAX_LINES + 1,
        "side/m.py:method": MAX_LINES + 2,
    }
