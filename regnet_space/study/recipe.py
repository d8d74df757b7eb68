"""Training recipes: one frozen, validated set of training settings shared by every trial.

The learning rate follows pycls: ``lr = base_lr * batch_size / 128`` (linear scaling), with a
half-period cosine schedule and a linear warmup from ``warmup_factor * lr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.generator import MAX_INPUT_SIZE
from ..core.validation import format_errors
from ..infra.dumping import dump_yaml
from ..infra.parsing import parse_yaml
from ..infra.reading import is_yaml_text, read_text_file
from .errors import StudyError

# The batch size the base learning rate is quoted at (pycls: lr = base_lr * batch / 128).
REFERENCE_BATCH = 128

Precision = Literal["fp32", "bf16", "fp16"]
Size = Annotated[int, Field(ge=1, le=MAX_INPUT_SIZE)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Recipe(BaseModel):
    """Every setting of one training run but the design and the data."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field("recipe", min_length=1, max_length=200, description="Recipe name.")
    epochs: int = Field(ge=1, le=100_000, description="Training epochs.")
    batch_size: int = Field(ge=1, le=1 << 20, description="Images per optimizer step.")
    base_lr: float = Field(
        gt=0, le=1e4, description="Learning rate at batch 128; lr = base_lr * batch_size / 128."
    )
    min_lr: float = Field(
        0.0, ge=0, le=1, description="Cosine floor as a fraction of lr (pycls OPTIM.MIN_LR)."
    )
    momentum: Fraction = Field(0.9, description="SGD momentum.")
    nesterov: bool = Field(True, description="Nesterov momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 weight decay.")
    bn_weight_decay: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Decay of BatchNorm weights and all biases (pycls "
        "BN.USE_CUSTOM_WEIGHT_DECAY); None: the same as weight_decay.",
    )
    warmup_epochs: float = Field(0.0, ge=0, le=100_000, description="Linear warmup length.")
    warmup_factor: float = Field(
        0.1, gt=0, le=1, description="Warmup starts at warmup_factor * lr."
    )
    label_smoothing: Fraction = Field(0.0, description="Cross-entropy label smoothing.")
    mixup_alpha: float = Field(0.0, ge=0, le=100, description="Mixup Beta(a, a); 0 is off.")
    ema_decay: Fraction | None = Field(
        None,
        description="Evaluate an exponential moving average of the weights: "
        "ema = decay * ema + (1 - decay) * weights, every ema_every steps; None is off.",
    )
    ema_every: int = Field(1, ge=1, le=1 << 20, description="Steps between EMA updates.")
    precision: Precision = Field(
        "fp32", description="bf16/fp16 autocast on CUDA only; other devices run fp32."
    )
    channels_last: bool = Field(False, description="Channels-last memory format.")
    compile: bool = Field(False, description="torch.compile the model.")
    zero_init_last_bn: bool = Field(
        False, description="Zero the last BN weight of every block (pycls ZERO_INIT_FINAL_GAMMA)."
    )
    augment: bool = Field(
        True, description="Training augmentation of the data set (crop and, where it fits, flip)."
    )
    train_size: Size = Field(description="Training image side in pixels.")
    test_size: Size = Field(description="Test image side in pixels (center crop for imagefolder).")
    test_resize: Size | None = Field(
        None,
        description="imagefolder: shorter side before the test center crop; "
        "None: round(test_size / 0.875).",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of init, order and augmentation.")

    @model_validator(mode="after")
    def _check_sizes(self) -> Recipe:
        if self.test_resize is not None and self.test_resize < self.test_size:
            raise ValueError(
                f"test_resize: must be at least test_size ({self.test_size}), "
                f"got {self.test_resize}"
            )
        return self

    @property
    def lr(self) -> float:
        """The peak learning rate: base_lr scaled linearly by batch_size / 128."""
        return self.base_lr * self.batch_size / REFERENCE_BATCH

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a fractional epoch: half-period cosine, then linear warmup."""
        import math

        t = min(max(epoch, 0.0), float(self.epochs))
        cos = 0.5 * (1.0 + math.cos(math.pi * t / self.epochs))
        lr = self.lr * ((1.0 - self.min_lr) * cos + self.min_lr)
        if t < self.warmup_epochs:
            alpha = t / self.warmup_epochs
            lr *= self.warmup_factor * (1.0 - alpha) + alpha
        return lr


def recipe_from_dict(data: Any, source: str = "<recipe>") -> Recipe:
    """Validate a mapping as a recipe; failures are one line naming the source and field."""
    if not isinstance(data, Mapping):
        raise StudyError(
            f"{source}: expected a mapping of recipe fields, got {type(data).__name__}"
        )
    if any(not isinstance(k, str) for k in data):
        raise StudyError(f"{source}: every key must be a string")
    try:
        return Recipe.model_validate(dict(data))
    except ValidationError as exc:
        raise StudyError(f"{source}: {format_errors(exc, Recipe)}") from None


def _parse(text: str, source: str) -> Recipe:
    data = parse_yaml(text, source, "recipe", error=StudyError)
    return recipe_from_dict(data, source)


def load_recipe(
    source: str | Path | Mapping[str, Any] | Recipe, base: Path | None = None
) -> Recipe:
    """A recipe from a path (relative to `base` when given), YAML text, a mapping or a Recipe."""
    if isinstance(source, Recipe):
        return source
    if isinstance(source, Mapping):
        return recipe_from_dict(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if base is not None and not path.is_absolute():
            path = base / path
        # A string is YAML text unless it names an existing file (relative to `base`).
        if isinstance(source, str) and (
            "\n" in source or not source.strip() or (is_yaml_text(source) and not path.exists())
        ):
            return _parse(source, "<recipe>")
        text = read_text_file(path, "recipe", error=StudyError)
        return _parse(text, str(path))
    raise StudyError(f"<recipe>: cannot load a recipe from {type(source).__name__}")


def recipe_with(recipe: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """A validated copy of `recipe` with some fields replaced (a study's sampled fields)."""
    if not overrides:
        return recipe
    return recipe_from_dict({**recipe.model_dump(), **dict(overrides)}, "recipe overrides")


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML text that load_recipe reads back to an equal recipe."""
    return dump_yaml(recipe.model_dump(mode="json"))
