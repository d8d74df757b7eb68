"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import SMALL


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small parametric y spec file (SMALL)."""
    p = tmp_path / "tiny.yaml"
    p.write_text(SMALL)
    return p
