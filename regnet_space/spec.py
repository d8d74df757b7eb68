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
- ``rounding``: ``pycls`` (the paper's rule) or ``torchvision`` (torchvision's width rounding).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .errors import SpecError

# Bounds that keep every design countable with exact integers and refuse absurd input early.
MAX_DEPTH = 1000
MAX_WIDTH = 1 << 20
MAX_STAGES = 64
MAX_SPEC_BYTES = 1 << 20

Rounding = Literal["pycls", "torchvision"]
Activation = Literal["relu", "silu", "gelu"]
BlockType = Literal["x", "y"]

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH)]
BottleneckMultiplier = Annotated[float, Field(gt=0, le=64)]


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
    )
    stem_width: Width = Field(32, description="Output channels of the 3x3 stride-2 stem.")
    num_channels: int = Field(3, ge=1, le=4096, description="Input image channels.")
    num_classes: int = Field(
        1000, ge=0, le=10_000_000, description="Classifier outputs; 0 means no linear layer."
    )
    activation: Activation = "relu"
    downsample_in_first_stage: bool = Field(
        True, description="Whether the first block of the first stage has stride 2."
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
    rounding: Rounding = Field("pycls", description="Block-compatibility rounding rule.")

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
_SPEC_ADAPTER: TypeAdapter[Spec] = TypeAdapter(Spec)


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec file format (either form), for editor validation."""
    schema = _SPEC_ADAPTER.json_schema()
    schema["title"] = "regnet-space spec"
    return schema


# ---------------------------------------------------------------------------------------------
# Loading


class _TooLong:
    """Stands for an integer literal too long for Python to convert (over 4300 digits)."""


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses aliases (alias bombs) and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in specs")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        # PyYAML keeps the last of two equal keys; in a spec that hides a mistake.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise SpecError(f"line {line}: duplicate key {_short(key_node.value)}")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # left to validation, which names the field
            return _TooLong()


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


def _short(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # Unknown keys come from the user: quote anything that is not a plain name.
        name = part if part.isidentifier() else _short(part)
        out += f".{name}" if out else name
    return out


def _format_error(err: Mapping[str, Any], fields: Mapping[str, set[str]]) -> str:
    loc = _loc(tuple(err["loc"]))
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        known = fields["stage" if err["loc"][0] == "stages" else "spec"]
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{loc}: unknown field{hint}"
    if kind == "missing":
        return f"{loc}: required field is missing"
    value = err.get("input")
    if isinstance(value, _TooLong):
        return f"{loc}: number too long to read"
    got = ""
    if isinstance(value, (int, float, str, bool)) or value is None:
        got = f", got {_short(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        msg = "must be a finite number"
    return f"{loc}: {msg}{got}" if loc else msg


def spec_from_dict(data: Any, source: str = "<dict>") -> Spec:
    """Validate a mapping as a spec; explicit when it has `stages`, parametric otherwise."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a mapping of spec fields, got {type(data).__name__}")
    if any(not isinstance(k, str) for k in data):
        raise SpecError(f"{source}: every key must be a string")
    cls: type[ParametricSpec] | type[ExplicitSpec] = (
        ExplicitSpec if "stages" in data else ParametricSpec
    )
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        fields = {"spec": set(cls.model_fields), "stage": set(StageSpec.model_fields)}
        errors = exc.errors(include_url=False)
        # A container whose items failed also reports itself too short: noise, drop it.
        deeper = {tuple(e["loc"][:i]) for e in errors for i in range(1, len(e["loc"]))}
        lines = [
            _format_error(e, fields)
            for e in errors
            if not (e["type"] == "too_short" and tuple(e["loc"]) in deeper)
        ]
        raise SpecError(f"{source}: " + "; ".join(dict.fromkeys(lines))) from None


def spec_from_text(text: str, source: str = "<string>") -> Spec:
    """Parse YAML text (safely, without aliases) and validate it as a spec."""
    if not text.strip():
        raise SpecError(f"{source}: the spec is empty")
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # _SpecLoader is a SafeLoader subclass
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise SpecError(f"{source}: {where}invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: YAML nested too deeply") from None
    except ValueError:  # e.g. an integer literal longer than Python converts (4300 digits)
        raise SpecError(f"{source}: a value is too long to read as a number") from None
    return spec_from_dict(data, source)


def read_text_file(path: Path, what: str = "spec") -> str:
    """Read a small UTF-8 text file, turning every OS problem into a one-line SpecError."""
    try:
        if path.is_dir():
            raise SpecError(f"{path}: is a directory, expected a {what} file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except SpecError:
        raise
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes, not a {what} file")
    if b"\0" in raw:
        raise SpecError(f"{path}: binary data, expected a YAML {what} file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text, expected a YAML {what} file") from None


def load_spec_file(path: str | Path) -> Spec:
    """Load and validate a YAML spec file."""
    p = Path(path)
    return spec_from_text(read_text_file(p), str(p))


def load_spec(source: str | Path | Mapping[str, Any] | Spec) -> Spec:
    """Load a spec from a path, YAML text, a mapping, or pass a spec through.

    A string is read as a path unless it holds a newline or a `key:` and names no file.
    """
    if isinstance(source, (ParametricSpec, ExplicitSpec)):
        return source
    if isinstance(source, Mapping):
        return spec_from_dict(source)
    if isinstance(source, Path):
        return load_spec_file(source)
    if isinstance(source, str):
        looks_like_text = (
            not source.strip() or "\n" in source or (":" in source and not Path(source).exists())
        )
        return spec_from_text(source) if looks_like_text else load_spec_file(source)
    raise SpecError(f"<input>: cannot load a spec from {type(source).__name__}")


def dump_spec(spec: Spec) -> str:
    """The spec as YAML text that load_spec reads back to an equal spec."""
    data = spec.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
