"""atomic_write_texts: many files, each complete or absent, checked before the first byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regnet_space.core.errors import OutputError
from regnet_space.core.io import atomic_write_texts


def test_writes_every_file_with_the_usual_mode(tmp_path: Path) -> None:
    items = [(tmp_path / f"d{i}.yaml", f"name: d{i}\n" * (i + 1)) for i in range(5)]
    atomic_write_texts(items)
    assert sorted(os.listdir(tmp_path)) == [f"d{i}.yaml" for i in range(5)]  # no temp left
    for path, text in items:
        assert path.read_text(encoding="utf-8") == text
    mask = os.umask(0)
    os.umask(mask)
    assert (items[0][0].stat().st_mode & 0o777) == 0o666 & ~mask


def test_an_existing_target_refuses_all_before_the_first_byte(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("keep\n")
    items = [(tmp_path / "a.yaml", "a\n"), (tmp_path / "b.yaml", "b\n")]
    with pytest.raises(OutputError, match="already exists"):
        atomic_write_texts(items)
    assert sorted(os.listdir(tmp_path)) == ["b.yaml"]
    assert (tmp_path / "b.yaml").read_text() == "keep\n"
    atomic_write_texts(items, force=True)
    assert (tmp_path / "a.yaml").read_text() == "a\n"
    assert (tmp_path / "b.yaml").read_text() == "b\n"


def test_a_failure_while_writing_leaves_no_temp_file(tmp_path: Path) -> None:
    items = [(tmp_path / "a.yaml", "a\n"), (tmp_path / "b.yaml", "\udcff not encodable\n")]
    with pytest.raises(UnicodeEncodeError):
        atomic_write_texts(items)
    assert os.listdir(tmp_path) == []
