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
- ``stem``: ``imagenet`` (3x3 conv, stride 2: pycls's ``simple_stem_in``), ``cifar`` (3x3
  conv, stride 1: pycls's ``res_stem_cifar``, for 32-pixel inputs), ``resnet`` (7x7 conv,
  stride 2, then a 3x3 max-pool, stride 2: pycls's ``res_stem_in``) or ``tiered`` (3x3 convs
  to 3/8, 1/2 and all of ``stem_width``, strides 2, 1, 2: timm's ``tiered`` stem).
- ``block``: the block kind (``BLOCK_KINDS``): ``x`` (residual bottleneck), ``y`` (x with SE),
  ``z`` (y with a linear output and no shortcut where the shape changes: RegNetZ, usually with
  ``bottleneck_multiplier`` > 1, an inverted bottleneck), ``v`` (pre-activation y), ``w``
  (pre-activation z), and pycls's AnyNet blocks ``vanilla`` (two 3x3 convs, no residual) and
  ``basic`` (two 3x3 convs with a residual). A kind sets the defaults of the switches below,
  which explicit specs may set one by one:
- ``preact``: norm and activation before each conv instead of after (timm's RegNetV); the
  shortcut starts after the block input's norm and activation, and the stem has no norm.
- ``linear_out``: no activation after the residual add.
- ``final_activation``: without ``head_width``, the activation once after the last stage;
  by default where the blocks end without one (``preact`` or ``linear_out``), as timm's RegNet
  has it (timm's ByobNet and pycls have none).
- ``bottleneck_in``: bottleneck width = round(block *input* width x bm) (timm's ``bottle_in``).
- ``shortcut``: where the shape changes, ``conv`` (1x1 conv + norm), ``avg`` (2x2 average pool,
  then the 1x1 conv + norm: timm's ``downsample: avg``) or ``none`` (no residual add there).
- ``head_width``: a 1x1 conv + norm + activation to this width before pooling (timm's
  ``num_features``, pycls's ``HEAD_W``); 0 for none.
- ``norm``: ``batch`` or ``group`` (GroupNorm with ``norm_groups`` groups, or groups of
  ``norm_group_size`` channels).
- ``se_activation``: the activation inside SE (x, y: relu, as Hugging Face's RegNet; z, v, w:
  the block's ``activation``, as timm's RegNet, torchvision and pycls's current code); ``se_from``:
  ``input`` (SE width round(se_ratio x block input width)) or ``bottleneck`` (se_ratio x
  bottleneck width rounded to a multiple of 8, at least 8: timm's ByobNet SE).
- ``drop_path``: stochastic depth, rising linearly from 0 at the first block to this rate at
  the last (timm's rule); training only.
- ``output_stride``: 32, 16 or 8: the strided stages past that network stride keep their
  resolution and dilate their 3x3 convs instead (timm's rule, for dense prediction); 0 (the
  default), every stage strides as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..infra.errors import RegNetSpaceError
from ..infra.parsing import parse_yaml
from ..infra.reading import open_regular
from .errors import SpecError
from .limits import DEFAULT_INPUT_SIZE, MAX_INPUT_SIZE
from .validation import format_errors

# Bounds that keep every design countable with exact integers and refuse absurd input early.
MAX_DEPTH = 1000
MAX_WIDTH = 1 << 20
MAX_STAGES = 64

Rounding = Literal["pycls", "timm", "torchvision"]
Activation = Literal["relu", "silu", "gelu"]
BlockType = Literal["x", "y", "z", "v", "w", "vanilla", "basic"]
StemType = Literal["imagenet", "cifar", "resnet", "tiered"]
Shortcut = Literal["conv", "avg", "none"]
Norm = Literal["batch", "group"]
SeFrom = Literal["input", "bottleneck"]
OutputStride = Literal[0, 8, 16, 32]
STEM_STRIDES: dict[str, int] = {"imagenet": 2, "cifar": 1, "resnet": 4, "tiered": 4}


@dataclass(frozen=True)
class BlockKind:
    """What a block kind sets: its defaults for the switches, and whether it has a bottleneck
    (1x1, grouped 3x3, 1x1) or two full 3x3 convs, and a residual add at all."""

    se_ratio: float
    preact: bool
    linear_out: bool
    shortcut: str
    se_activation: str | None  # None: the block's activation
    bottleneck: bool = True
    residual: bool = True


BLOCK_KINDS: dict[str, BlockKind] = {
    "x": BlockKind(0.0, preact=False, linear_out=False, shortcut="conv", se_activation="relu"),
    "y": BlockKind(0.25, preact=False, linear_out=False, shortcut="conv", se_activation="relu"),
    "z": BlockKind(0.25, preact=False, linear_out=True, shortcut="none", se_activation=None),
    "v": BlockKind(0.25, preact=True, linear_out=False, shortcut="conv", se_activation=None),
    "w": BlockKind(0.25, preact=True, linear_out=True, shortcut="none", se_activation=None),
    "vanilla": BlockKind(0.0, False, False, "none", "relu", bottleneck=False, residual=False),
    "basic": BlockKind(0.0, False, False, "conv", "relu", bottleneck=False),
}
# Switches whose default is the block kind's: filled in before validation, and left out of
# dumped specs where they equal it; and the other switches, left out at their field default.
KIND_SWITCHES = ("se_ratio", "preact", "linear_out", "shortcut", "se_activation")
KIND_SWITCHES += ("final_activation",)
_PLAIN_SWITCHES = ("bottleneck_in", "se_from", "head_width", "norm", "drop_path")
_PLAIN_SWITCHES += ("norm_groups", "norm_group_size", "output_stride")
_ACTIVATIONS = ("relu", "silu", "gelu")


def kind_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of KIND_SWITCHES for spec fields `data`: its block kind's, and a final
    activation where the blocks end without one (timm's RegNet); se_ratio 0 alone for an
    unknown kind."""
    block = data.get("block")
    kind = BLOCK_KINDS.get(block) if isinstance(block, str) else None
    if kind is None:
        return {"se_ratio": 0.0}  # `block` itself names the error
    # An invalid activation is reported once, under its own name.
    act = data.get("activation", "relu")
    act = act if act in _ACTIVATIONS else "relu"
    preact, linear = data.get("preact", kind.preact), data.get("linear_out", kind.linear_out)
    return {
        "se_ratio": kind.se_ratio,
        "preact": kind.preact,
        "linear_out": kind.linear_out,
        "shortcut": kind.shortcut,
        "se_activation": kind.se_activation or act,
        "final_activation": kind.residual and (preact is True or linear is True),
    }


# defer_build: a model's validator is made when it first validates, so a command that reads
# parametric specs never builds the explicit form's (nor the base's, which never validates).
_CONFIG = ConfigDict(
    frozen=True, extra="forbid", strict=True, allow_inf_nan=False, defer_build=True
)

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
    block: BlockType = Field(
        description="x: residual bottleneck block; y: x block with SE; z: y with a linear "
        "output, no shortcut where the shape changes; v: pre-activation y; w: pre-activation z; "
        "vanilla, basic: pycls's two-3x3 blocks without and with a residual."
    )
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
        description="imagenet: 3x3 conv, stride 2; cifar: 3x3 conv, stride 1 (res_stem_cifar); "
        "resnet: 7x7 conv, stride 2, and 3x3 max-pool, stride 2 (res_stem_in); tiered: 3x3 "
        "convs to 3/8, 1/2 and all of stem_width, strides 2, 1, 2 (timm).",
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
    preact: bool = Field(
        False,
        description="Norm and activation before each conv (pre-activation). Default: true for "
        "v and w blocks.",
        json_schema_extra=_no_schema_default,
    )
    linear_out: bool = Field(
        False,
        description="No activation after the residual add. Default: true for z and w blocks.",
        json_schema_extra=_no_schema_default,
    )
    bottleneck_in: bool = Field(
        False, description="Bottleneck width from the block's input width (timm's bottle_in)."
    )
    shortcut: Shortcut = Field(
        "conv",
        description="Where the shape changes: conv (1x1 conv + norm), avg (2x2 average pool, "
        "then the 1x1 conv) or none (no residual add there). Default: none for z and w blocks.",
        json_schema_extra=_no_schema_default,
    )
    se_activation: Activation = Field(
        "relu",
        description="Activation inside SE. Default: relu for x and y blocks (Hugging Face's "
        "RegNet), the block's activation for z, v and w (timm's RegNet).",
        json_schema_extra=_no_schema_default,
    )
    se_from: SeFrom = Field(
        "input",
        description="input: SE width = round(se_ratio * block input width); bottleneck: "
        "se_ratio * bottleneck width rounded to a multiple of 8 (timm's ByobNet).",
    )
    head_width: int = Field(
        0,
        ge=0,
        le=MAX_WIDTH,
        description="A 1x1 conv + norm + activation to this width before pooling; 0 for none.",
    )
    final_activation: bool = Field(
        False,
        description="Without head_width: the activation after the last stage. Default: true "
        "where the blocks end without one (preact or linear_out), as timm's RegNet has it.",
        json_schema_extra=_no_schema_default,
    )
    norm: Norm = Field("batch", description="batch: BatchNorm; group: GroupNorm.")
    norm_groups: int = Field(
        0, ge=0, le=MAX_WIDTH, description="GroupNorm: the number of groups of every norm."
    )
    norm_group_size: int = Field(
        0, ge=0, le=MAX_WIDTH, description="GroupNorm: channels per group of every norm."
    )
    drop_path: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Stochastic depth: the rate rises linearly from 0 at the first block to this "
        "at the last (training only).",
    )
    output_stride: OutputStride = Field(
        0,
        description="32, 16 or 8: the strided stages past this network stride dilate their 3x3 "
        "convs instead (timm's rule); 0: every stage strides as given.",
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        # The defaults depend on the block kind, so they are filled in before field validation.
        if not isinstance(data, Mapping):
            return data
        defaults = kind_defaults(data)
        missing = {k: v for k, v in defaults.items() if k not in data}
        return {**data, **missing} if missing else data

    @model_validator(mode="after")
    def _check_se(self) -> _SpecBase:
        if self.block == "x" and self.se_ratio != 0:
            raise ValueError(f"se_ratio: x blocks have no SE, use block: y; got {self.se_ratio}")
        if self.block == "y" and self.se_ratio == 0:
            raise ValueError("se_ratio: y blocks need se_ratio > 0 (use block: x for no SE)")
        kind = BLOCK_KINDS[self.block]
        if not kind.bottleneck:
            for key in ("se_ratio", "preact", "bottleneck_in"):
                if getattr(self, key):
                    raise ValueError(
                        f"{key}: {self.block} blocks (two 3x3 convs) have no bottleneck, SE or "
                        "pre-activation; use x, y, z, v or w"
                    )
        if not kind.residual:
            if self.drop_path:
                raise ValueError(f"drop_path: {self.block} blocks have no residual to drop")
            if self.shortcut != "none" or self.linear_out:
                key = "linear_out" if self.linear_out else "shortcut"
                raise ValueError(f"{key}: {self.block} blocks have no residual add")
        self._check_norm()
        if self.stem == "tiered" and 3 * self.stem_width // 8 < 1:
            raise ValueError(
                f"stem_width: the tiered stem's first conv has 3/8 of it; {self.stem_width} is "
                "too narrow"
            )
        return self

    def _check_norm(self) -> None:
        given = [k for k in ("norm_groups", "norm_group_size") if getattr(self, k)]
        if self.norm == "batch" and given:
            raise ValueError(f"{given[0]}: only with norm: group")
        if self.norm == "group" and len(given) != 1:
            raise ValueError(
                "norm: group needs one of norm_groups (groups per norm) or norm_group_size "
                "(channels per group)" + (", not both" if given else "")
            )


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
        if not BLOCK_KINDS[self.block].bottleneck:
            raise ValueError(
                f"block: {self.block} blocks have no groups or bottleneck for the width rule; "
                "give explicit stages"
            )
        return self


class StageSpec(BaseModel):
    """One explicit stage: `depth` blocks of output `width`."""

    model_config = _CONFIG

    width: Width
    depth: Depth
    group_width: Width | None = Field(
        None, description="Channels per group of the 3x3 conv (bottleneck blocks: required)."
    )
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
        bottleneck = BLOCK_KINDS[self.block].bottleneck
        for i, st in enumerate(self.stages):
            if not bottleneck:
                if st.group_width is not None or st.bottleneck_multiplier != 1:
                    key = "group_width" if st.group_width is not None else "bottleneck_multiplier"
                    raise ValueError(
                        f"stages[{i}].{key}: {self.block} blocks have full 3x3 convs, no groups "
                        "or bottleneck"
                    )
                continue
            if st.group_width is None:
                raise ValueError(f"stages[{i}].group_width: required field is missing")
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


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec file format (either form), for editor validation."""
    from pydantic import TypeAdapter  # only for the schema

    schema = TypeAdapter(Spec).json_schema()
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
    return spec_from_dict(parse_yaml(text, source, "spec", error=SpecError), source)


_SPACE_KEY = re.compile(rb"^space[ \t]*:", re.MULTILINE)


def is_space_file(path: str | Path) -> bool:
    """Cheap check (no YAML parsing): does the file have a top-level `space:` key?

    A spec cannot have one (specs forbid unknown fields), so tools that read folders of specs
    can skip space files with this. Unreadable files are not space files.
    """
    try:
        with open_regular(Path(path), "spec") as fh:  # a FIFO must not block a folder scan
            head = fh.read(1 << 16)
    except (OSError, RegNetSpaceError):
        return False
    return _SPACE_KEY.search(head) is not None


def switches_at_default(spec: Spec) -> set[str]:
    """The block switches (not se_ratio, always written) at their default: the block kind's,
    or the field's."""
    data = spec.model_dump()
    kind = kind_defaults(data)
    out = {k for k in KIND_SWITCHES[1:] if data[k] == kind[k]}
    return out | {k for k in _PLAIN_SWITCHES if data[k] == _SpecBase.model_fields[k].default}


def dump_spec(spec: Spec) -> str:
    """The spec as YAML text that spec_from_text (and load_spec) reads back to an equal spec."""
    data = spec.model_dump(mode="json", exclude_none=True)
    # Switches at their default (the block kind's, or the field's) are left out, as in specs
    # written by hand.
    for key in switches_at_default(spec):
        data.pop(key, None)
    # input_size last, and only when it is not the default: a spec at 224 is written without
    # it, as specs written by hand are.
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
    from ..infra.dumping import dump_yaml  # the YAML writer: only where a spec is written

    return dump_yaml(data)
