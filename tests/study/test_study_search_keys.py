"""A study file's `search` keys: the recipe's own field names, the documented aliases (lr, wd),
and for anything else one line that lists the valid names."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import write_study

from regnet_space.cli import main
from regnet_space.study.recipe import Recipe
from regnet_space.study.studyfile import ALIASES, resolve


def test_recipe_field_names_are_search_keys(tmp_path: Path) -> None:
    search = {
        "base_lr": {"dist": "log_uniform", "low": 0.05, "high": 1.0},
        "weight_decay": {"values": [5e-5, 5e-4]},
        "label_smoothing": {"dist": "uniform", "low": 0.0, "high": 0.1},
    }
    study = resolve(write_study(tmp_path / "s.yaml", search=search))
    for t in study.trials:
        assert set(t.recipe_fields) == set(search)
        assert 0.05 <= t.recipe_fields["base_lr"] <= 1.0
        assert t.recipe_fields["weight_decay"] in (5e-5, 5e-4)


def test_aliases_name_the_same_fields(tmp_path: Path) -> None:
    assert ALIASES == {"lr": "base_lr", "wd": "weight_decay"}
    short = resolve(write_study(tmp_path / "a.yaml", search={"lr": {"values": [0.1, 0.2]}}))
    full = resolve(write_study(tmp_path / "b.yaml", search={"base_lr": {"values": [0.1, 0.2]}}))
    assert [t.recipe_fields for t in short.trials] == [t.recipe_fields for t in full.trials]
    assert all(set(t.recipe_fields) == {"base_lr"} for t in short.trials)


@pytest.mark.parametrize("key", ["learning_rate", "recipe.base_lr", "name", "seed", "LR"])
def test_other_keys_are_refused_with_the_valid_names(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "s.yaml", search={key: {"values": [0.1]}})
    assert main(["study", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"search.{key}: not a recipe field" in err
    valid = sorted(f for f in Recipe.model_fields if f not in ("name", "seed"))
    listed = err.split("searchable: ", 1)[1].split(" (aliases")[0]
    assert listed.split(", ") == valid
    assert "aliases: lr = base_lr, wd = weight_decay" in err
    assert not list(tmp_path.glob("*.db"))
