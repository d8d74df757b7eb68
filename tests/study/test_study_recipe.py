"""Recipes: the shipped files, pycls's learning-rate rule and schedule, hostile input."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from regnet_space.study.errors import StudyError
from regnet_space.study.recipe import (
    Recipe,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
    recipe_with,
)

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
BASE: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 256,
    "base_lr": 0.1,
    "train_size": 32,
    "test_size": 32,
}


def test_shipped_recipes_load_and_state_the_lr_rule() -> None:
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert names == ["cifar10", "digits", "digits-8px", "imagenet-10ep"]
    for path in RECIPES.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.name == path.stem
        assert "base_lr * batch_size / 128" in path.read_text()
        assert load_recipe(dump_recipe(recipe)) == recipe
    cifar = load_recipe(RECIPES / "cifar10.yaml")
    # pycls's cifar_regnet base: lr 1.0 at batch 1024, 50 epochs, 5 warmup epochs
    assert (cifar.lr, cifar.epochs, cifar.warmup_epochs, cifar.batch_size) == (1.0, 50, 5.0, 1024)
    assert (cifar.label_smoothing, cifar.mixup_alpha, cifar.bn_weight_decay) == (0.1, 0.5, 0.0)
    imagenet = load_recipe(RECIPES / "imagenet-10ep.yaml")
    assert (imagenet.epochs, imagenet.lr, imagenet.weight_decay) == (10, 0.2, 5e-5)
    assert (imagenet.train_size, imagenet.test_size, imagenet.test_resize) == (224, 224, 256)


def test_lr_scales_with_batch_and_follows_warmup_then_half_cosine() -> None:
    r = recipe_from_dict(BASE | {"warmup_epochs": 2.0, "warmup_factor": 0.1})
    assert r.lr == pytest.approx(0.2)  # 0.1 * 256 / 128
    assert r.lr_at(0.0) == pytest.approx(0.02)  # warmup starts at warmup_factor * lr
    # halfway through warmup: cosine(1 of 10) times the mean of 0.1 and 1
    cos1 = 0.5 * (1 + math.cos(math.pi / 10))
    assert r.lr_at(1.0) == pytest.approx(0.2 * cos1 * 0.55)
    assert r.lr_at(5.0) == pytest.approx(0.1)  # half-period cosine: half at mid-training
    assert r.lr_at(10.0) == pytest.approx(0.0)
    floor = recipe_from_dict(BASE | {"min_lr": 0.01})
    assert floor.lr_at(10.0) == pytest.approx(0.2 * 0.01)
    values = [r.lr_at(e / 4) for e in range(8, 41)]
    assert values == sorted(values, reverse=True)


def test_text_mapping_path_and_base_relative_path(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "epochs: 3\nbatch_size: 8\nbase_lr: 0.5\ntrain_size: 16\ntest_size: 16\n"
    )
    from_file = load_recipe(tmp_path / "r.yaml")
    assert load_recipe("r.yaml", base=tmp_path) == from_file
    assert load_recipe(str(tmp_path / "r.yaml")) == from_file
    assert load_recipe(dict(from_file.model_dump())) == from_file
    assert load_recipe(from_file) is from_file
    assert (
        load_recipe("{epochs: 3, batch_size: 8, base_lr: 0.5, train_size: 16, test_size: 16}")
        == from_file
    )


def test_recipe_with_returns_a_validated_copy() -> None:
    r = recipe_from_dict(BASE)
    assert recipe_with(r, {}) is r
    changed = recipe_with(r, {"base_lr": 0.4, "weight_decay": 1e-4})
    assert (changed.base_lr, changed.weight_decay, changed.epochs) == (0.4, 1e-4, 10)
    with pytest.raises(StudyError, match="recipe overrides: base_lr: Input should be greater"):
        recipe_with(r, {"base_lr": -1.0})
    with pytest.raises(StudyError, match=r"unknown field .*did you mean 'base_lr'"):
        recipe_with(r, {"base_rl": 0.1})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baselr": 0.1}, "baselr: unknown field (did you mean 'base_lr'?)"),
        ({"epochs": "10"}, "epochs: Input should be a valid integer, got '10'"),
        ({"epochs": 1.5}, "epochs: Input should be a valid integer"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1, got 0"),
        ({"batch_size": True}, "batch_size: Input should be a valid integer"),
        ({"base_lr": float("nan")}, "base_lr: must be a finite number"),
        ({"base_lr": float("inf")}, "base_lr: must be a finite number"),
        ({"momentum": 1.0}, "momentum: Input should be less than 1"),
        ({"precision": "fp8"}, "precision: Input should be 'fp32', 'bf16' or 'fp16'"),
        ({"ema_decay": 1.5}, "ema_decay: Input should be less than 1"),
        ({"train_size": 0}, "train_size: Input should be greater than or equal to 1"),
        ({"test_resize": 16}, "test_resize: must be at least test_size (32), got 16"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"nesterov": "yes"}, "nesterov: Input should be a valid boolean"),
        ({"epochs": 10**5000}, "epochs: Input should be less than or equal to 100000"),
    ],
)
def test_bad_fields_are_one_line_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyError) as err:
        recipe_from_dict(BASE | change, "r.yaml")
    text = str(err.value)
    assert text.startswith("r.yaml: ") and message in text and "\n" not in text


def test_missing_fields_are_named() -> None:
    with pytest.raises(StudyError, match="train_size: required field is missing"):
        recipe_from_dict({k: v for k, v in BASE.items() if k != "train_size"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the recipe is empty"),
        ("epochs: &a 3\nbatch_size: *a\n", "YAML aliases (*name) are not allowed"),
        ("epochs: 3\nepochs: 4\n", "duplicate key 'epochs'"),
        ("- 1\n- 2\n", "expected a mapping of recipe fields, got list"),
        ("epochs: [\n", "invalid YAML"),
        ("epochs: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
        ("epochs: 3\nbase_lr: .inf\nbatch_size: 8\ntrain_size: 8\ntest_size: 8\n", "finite"),
        ("epochs: 99999999999999999999999999999999999999999999\n", "epochs: Input should be"),
    ],
)
def test_hostile_yaml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(StudyError) as err:
        load_recipe(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))


def test_unreadable_sources_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"epochs: 1\0")
    (tmp_path / "big.yaml").write_bytes(b"#" * (2 << 20))
    for path, message in [
        (tmp_path / "none.yaml", "no such file"),
        (tmp_path, "is a directory"),
        (tmp_path / "bin.yaml", "binary data"),
        (tmp_path / "big.yaml", "larger than"),
    ]:
        with pytest.raises(StudyError, match=message) as err:
            load_recipe(path)
        assert "\n" not in str(err.value)
    with pytest.raises(StudyError, match="cannot load a recipe from int"):
        load_recipe(3)  # type: ignore[arg-type]


def test_recipe_is_frozen() -> None:
    r = recipe_from_dict(BASE)
    with pytest.raises(Exception, match="frozen"):
        r.epochs = 3  # type: ignore[misc]
    assert isinstance(r, Recipe)
