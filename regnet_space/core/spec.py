"""The spec: a RegNet named by its design parameters (parametric) or by explicit stages.

Field names are the public file format. Paper names and their meaning:

- ``depth`` (d): number of blocks in total.
- ``w0``: initial width, a positive multiple of ``q``.
- ``wa``: slope of the linear width rule ``u_j = w0 + wa * j``.
- ``wm``: width multiplier between stages (> 1); widths are quantized to ``w0 * wm**s``.
- ``q``: width quantum (8).
- ``group_width`` (g): channels per group in the 3x3 convolution.
- ``bottleneck_multiplier`` (bm): bottleneck width = block width x bm. The paper's
  "bottleneck ratio" b is 1 / bm: b = 1 is no bottleneck, b = 4 is bm = 0.25.
- ``se_ratio``: squeeze-excitation width = round(se_ratio x block input width); 0 for X blocks.
- ``rounding``: how widths are rounded, as each peer library does it:
  ``pycls`` (the paper's code: float64 width rule, nearest multiple of the group width),
  ``timm`` (timm's ``generate_regnet``: the same steps in torch float32, then pycls's
  group-width rounding, timm's ``group_min_ratio=0``) or ``torchvision`` (torchvision's
  ``BlockParams``: float32 width rule, then "make divisible" keeping 90 %, which is also
  timm's ``group_min_ratio=0.9``). float32 and float64 differ only where ``w0 * wm**s / q`` or
  the exponent lands on a decimal .5 (for example w0=120, wm=2.1, q=8: 31.5).
- ``input_size``: the square input side the design is meant for (default 224); counts, builds
  and exports use it unless an explicit input size is given.
- ``stem``: ``imagenet`` (3x3 conv, stride 2) or ``cifar`` (3x3 conv, stride 1: pycls's
  ``res_stem_cifar``, for 32-pixel inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .errors import SpecError
from .limits import DEFAULT_INPUT_SIZE, MAX_INPUT_SIZE
from .loading import dump_yaml, format_errors, is_yaml_text, parse_yaml, read_text_file
from .names import resolve_name

# Bounds that keep every design countable with exact integers and refuse absurd input early.
MAX_DEPTH = 1000
MAX_WIDTH = 1 << 20
MAX_STAGES = 64

Rounding = Literal["pycls", "timm", "torchvision"]
Activation = Literal["relu", "silu", "gelu"]
BlockType = Literal["x", "y"]
StemType = Literal["imagenet", "cifar"]
STEM_STRIDES: dict[str, int] = {"imagenet": 2, "cifar": 1}

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH)]
BottleneckMultiplier = Annotated[float, Field(gt=0, le=64)]


def _no_schema_default(schema: dict[str, Any]) -> None:
    """Drop a default that JSON Schema cannot state (it depends on another field)."""
    schema.pop("default", None)


class _SpecBase(BaseModel):
    """Fields shared by both forms: block type, stem, head and input channels."""

    model_config = _CONFIG

    name: str = Field(min_length=1, max_length=200, description="Human-readable model name.")
    block: BlockType = Field(description="x: residual bottleneck block; y: x block with SE.")
    se_ratio: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="SE width = round(se_ratio * block input width). Default 0.25 for y, 0 for x.",
        # The default depends on `block` (filled in before validation): no single value to show.
        json_schema_extra=_no_schema_default,
    )
    stem_width: Width = Field(32, description="Output channels of the 3x3 stem conv.")
    stem: StemType = Field(
        "imagenet",
        description="imagenet: 3x3 conv, stride 2; cifar: 3x3 conv, stride 1 (res_stem_cifar).",
    )
    num_channels: int = Field(3, ge=1, le=4096, description="Input image channels.")
    num_classes: int = Field(
        1000, ge=0, le=10_000_000, description="Classifier outputs; 0 means no linear layer."
    )
    activation: Activation = "relu"
    downsample_in_first_stage: bool = Field(
        True, description="Whether the first block of the first stage has stride 2."
    )
    input_size: int = Field(
        DEFAULT_INPUT_SIZE,
        ge=1,
        le=MAX_INPUT_SIZE,
        description="Square input side the design is meant for (default 224); counts, builds "
        "and exports use it unless --input-size overrides it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_se_ratio(cls, data: Any) -> Any:
        # The default depends on the block type, so it is filled in before field validation.
        if isinstance(data, Mapping) and "se_ratio" not in data:
            return {**data, "se_ratio": 0.25 if data.get("block") == "y" else 0.0}
        return data

    @model_validator(mode="after")
    def _check_se(self) -> _SpecBase:
        if self.block == "x" and self.se_ratio != 0:
            raise ValueError(f"se_ratio: x blocks have no SE, use block: y; got {self.se_ratio}")
        if self.block == "y" and self.se_ratio == 0:
            raise ValueError("se_ratio: y blocks need se_ratio > 0 (use block: x for no SE)")
        return self


class ParametricSpec(_SpecBase):
    """A RegNet named by the quantized linear rule (depth, w0, wa, wm, q) and block options."""

    depth: Depth = Field(description="d: number of blocks in total.")
    w0: Width = Field(description="Initial width, a positive multiple of q.")
    wa: float = Field(ge=0, le=1e6, description="Slope of the linear width rule.")
    wm: float = Field(gt=1, le=1e3, description="Width multiplier between stages.")
    group_width: Width = Field(description="g: channels per group of the 3x3 convolution.")
    bottleneck_multiplier: BottleneckMultiplier = Field(
        1.0, description="bm: bottleneck width = width * bm (the paper's b is 1 / bm)."
    )
    q: int = Field(8, ge=1, le=4096, description="Width quantum.")
    rounding: Rounding = Field(
        "pycls",
        description="Width rounding as pycls (float64), timm (float32) or torchvision (float32, "
        "make-divisible) computes it.",
    )

    @model_validator(mode="after")
    def _check_w0(self) -> ParametricSpec:
        if self.w0 % self.q:
            raise ValueError(f"w0: must be a positive multiple of q={self.q}, got {self.w0}")
        return self


class StageSpec(BaseModel):
    """One explicit stage: `depth` blocks of output `width`."""

    model_config = _CONFIG

    width: Width
    depth: Depth
    group_width: Width
    bottleneck_multiplier: BottleneckMultiplier = 1.0
    stride: Literal[1, 2] | None = Field(
        None,
        description="Stride of the first block; default 2 (stage 0: downsample_in_first_stage).",
    )


class ExplicitSpec(_SpecBase):
    """A RegNet given stage by stage (the Hugging Face config form)."""

    # Lax only for the container (YAML gives lists); each stage stays strict.
    stages: tuple[StageSpec, ...] = Field(min_length=1, max_length=MAX_STAGES, strict=False)

    @model_validator(mode="after")
    def _check_stages(self) -> ExplicitSpec:
        for i, st in enumerate(self.stages):
            wb = round(st.width * st.bottleneck_multiplier)
            if wb < 1:
                raise ValueError(
                    f"stages[{i}].bottleneck_multiplier: bottleneck width round({st.width} * "
                    f"{st.bottleneck_multiplier}) must be at least 1"
                )
            g = min(st.group_width, wb)
            if wb % g:
                raise ValueError(
                    f"stages[{i}].width: bottleneck width {wb} "
                    f"must be a multiple of group width {g}"
                )
        first = self.stages[0].stride
        if (
            first is not None
            and "downsample_in_first_stage" in self.model_fields_set
            and (first == 2) != self.downsample_in_first_stage
        ):
            raise ValueError(
                "stages[0].stride: contradicts downsample_in_first_stage; give only one of them"
            )
        return self

    def strides(self) -> tuple[int, ...]:
        """Stride of each stage's first block, defaults filled in."""
        default_first = 2 if self.downsample_in_first_stage else 1
        return tuple(
            st.stride if st.stride is not None else (default_first if i == 0 else 2)
            for i, st in enumerate(self.stages)
        )


Spec = ParametricSpec | ExplicitSpec
# Fields only the parametric form has: with `stages`, they mean the file mixes both forms.
_PARAMETRIC_ONLY = ("depth", "w0", "wa", "wm", "group_width", "bottleneck_multiplier")
_PARAMETRIC_ONLY += ("q", "rounding")
_SPEC_ADAPTER: TypeAdapter[Spec] = TypeAdapter(Spec)


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec file format (either form), for editor validation."""
    schema = _SPEC_ADAPTER.json_schema()
    schema["title"] = "regnet-space spec"
    return schema


# ---------------------------------------------------------------------------------------------
# Loading


def spec_from_dict(data: Any, source: str = "<dict>") -> Spec:
    """Validate a mapping as a spec; explicit when it has `stages`, parametric otherwise."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a mapping of spec fields, got {type(data).__name__}")
    if any(not isinstance(k, str) for k in data):
        raise SpecError(f"{source}: every key must be a string")
    if "space" in data and "family" in data:
        raise SpecError(
            f"{source}: a design-space file, not a spec; draw designs from it with "
            "`regnet-space sample`"
        )
    if "stages" in data:
        mixed = [k for k in _PARAMETRIC_ONLY if k in data]
        if mixed:
            also = f" (also {', '.join(mixed[1:])})" if len(mixed) > 1 else ""
            raise SpecError(
                f"{source}: {mixed[0]}: a spec is parametric or explicit (stages:), not both{also}"
            )
    cls: type[ParametricSpec] | type[ExplicitSpec] = (
        ExplicitSpec if "stages" in data else ParametricSpec
    )
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(f"{source}: {format_errors(exc, cls)}") from None


def spec_from_text(text: str, source: str = "<string>") -> Spec:
    """Parse YAML text (safely: no objects, aliases or duplicate keys) and validate it."""
    return spec_from_dict(parse_yaml(text, source, "spec"), source)


def load_spec_file(path: str | Path) -> Spec:
    """Load and validate a YAML spec file."""
    p = Path(path)
    return spec_from_text(read_text_file(p), str(p))


def load_spec(source: str | Path | Mapping[str, Any] | Spec) -> Spec:
    """Load a spec from a path, YAML text, a mapping or a shipped model name (core only).

    A string is YAML text or a path as `loading.is_yaml_text` tells; a path that does not
    exist is looked up in the names table. `regnet_space.load_spec` (interop.configs) also
    reads Hugging Face and pycls configs.
    """
    if isinstance(source, (ParametricSpec, ExplicitSpec)):
        return source
    if isinstance(source, Mapping):
        return spec_from_dict(source)
    if isinstance(source, Path):
        return load_spec_file(source)
    if isinstance(source, str):
        if is_yaml_text(source):
            return spec_from_text(source)
        named = None if Path(source).exists() else resolve_name(source)
        return load_spec_file(named or source)
    raise SpecError(f"<input>: cannot load a spec from {type(source).__name__}")


def dump_spec(spec: Spec) -> str:
    """The spec as YAML text that load_spec reads back to an equal spec."""
    data = spec.model_dump(mode="json", exclude_none=True)
    # input_size last, and only when it is not the default: specs at 224 read as they always did.
    size = data.pop("input_size")
    if size != DEFAULT_INPUT_SIZE:
        data["input_size"] = size
    if data.get("stem") == "imagenet":  # the default, left out as in specs written by hand
        del data["stem"]
    if (
        isinstance(spec, ExplicitSpec)
        and spec.stages[0].stride is not None
        and "downsample_in_first_stage" not in spec.model_fields_set
    ):  # the first stage's stride says it; both would read back as a contradiction
        data.pop("downsample_in_first_stage", None)
    return dump_yaml(data)
