"""The package layout: the import contracts hold and the numbers-only sides never load torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "regnet_space"
NUMPY_ONLY = ("infra", "core", "space", "analysis")


def _modules(side: str) -> list[str]:
    return sorted(
        "regnet_space."
        + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in (PACKAGE / side).rglob("*.py")
    )


@pytest.mark.parametrize("side", NUMPY_ONLY)
def test_numpy_only_sides_never_import_torch(side: str) -> None:
    modules = _modules(side)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'fvcore', 'transformers'))\n"
        "assert not bad, bad[:5]\n"
        "print(len(" + repr(modules) + "))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(modules) > 0


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is in the test extra"
    proc = subprocess.run([exe], capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "0 broken" in proc.stdout


def test_every_module_and_side_says_what_it_is() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.relative_to(ROOT)} has no docstring"
        if path.name == "__init__.py" and path.parent != PACKAGE:
            assert "import" in doc.lower(), (
                f"{path.relative_to(ROOT)}: say what the side may import"
            )


def test_nothing_cites_files_outside_the_repository() -> None:
    tree = [*PACKAGE.rglob("*.py"), *(ROOT / "specs").rglob("*.yaml"), ROOT / "README.md"]
    tree += [p for p in (ROOT / "tests").rglob("*.py") if p.name != "test_architecture.py"]
    for path in sorted(tree):
        text = path.read_text()
        for outside in ("shared/", "reference/", "regnet-facts", "zoo.md", "studies.md"):
            assert outside not in text, f"{path.relative_to(ROOT)} cites {outside}"


def test_every_module_path_the_readme_names_exists() -> None:
    import importlib
    import re

    names = set(re.findall(r"regnet_space(?:\.[a-z_]+)+", (ROOT / "README.md").read_text()))
    assert names, "the README names modules"
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            parent, _, attr = name.rpartition(".")
            assert hasattr(importlib.import_module(parent), attr), name
