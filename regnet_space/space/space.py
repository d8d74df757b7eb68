"""Design-space files: which spec fields are sampled, from which distributions, under which rules.

A space file is YAML with a top-level ``space:`` key (its name), which is what tells it apart
from a spec. Two families:

- ``regnet``: parametric designs (depth, w0, wa, wm, group_width, bottleneck_multiplier), as
  pycls samples them; every design goes through the quantized linear rule.
- ``anynet``: explicit designs of ``num_stages`` stages whose width, depth, group width and
  bottleneck multiplier are drawn per stage (the paper's AnyNetX), optionally ``shared`` by all
  stages or ``non_decreasing`` from stage to stage. ``num_stages`` is a count, or
  ``{values: [2, 3]}``: each design draws its stage count first, uniformly from the list.

Each sampled parameter is ``{dist: D, low: L, high: H, quantum: Q}`` (pycls's quantized
distributions, closed range) or ``{values: [...]}`` (uniform over the list). Fixed spec fields
go under ``spec:``; ``choices:`` lists values of the block kind and switches (``block``,
``preact``, ``shortcut``, ...: CHOICE_FIELDS), one drawn uniformly per field and design.
Constraints bound flops, params and acts (paper convention), the stage count and the
skipped-exponent rule; ranges are ``[LO, HI]`` or ``"LO:HI"`` with K/M/G suffixes and
null or an empty side for no bound.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from ..core.errors import SpecError
from ..core.generator import MAX_INPUT_SIZE
from ..core.spec import (
    BLOCK_KINDS,
    MAX_STAGES,
    ExplicitSpec,
    ParametricSpec,
    StageSpec,
    is_space_file,
)
from ..core.validation import format_error, format_errors
from ..infra.parsing import parse_yaml
from ..infra.reading import is_yaml_text, read_text_file
from .distributions import (
    ListOf,
    QuantizedDist,
    ValuesDist,
    probe_values,
    range_or_choice,
)


class SpaceError(SpecError):
    """A design-space file (or text, or mapping) that does not parse or breaks a rule."""


_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


StageField = Literal["width", "depth", "group_width", "bottleneck_multiplier"]

# Spec fields a regnet space may sample, in the order they are drawn; the first five are needed.
REGNET_FIELDS = ("depth", "w0", "wa", "wm", "group_width", "bottleneck_multiplier")
STAGE_FIELDS: tuple[StageField, ...] = ("width", "depth", "group_width", "bottleneck_multiplier")
INT_FIELDS = frozenset({"depth", "w0", "group_width", "width"})
# Spec fields a space may draw from a list of values (uniformly, independently per field).
CHOICE_FIELDS = ("block", "preact", "linear_out", "bottleneck_in", "shortcut", "se_from")
CHOICE_FIELDS += ("se_activation", "activation", "final_activation", "stem", "head_width")
CHOICE_FIELDS += ("output_stride",)
MAX_COMBINATIONS = 256  # of choice values, each validated with the space
_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_COUNT_RE = re.compile(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*")


# ---------------------------------------------------------------------------------------------
# Bounds: "396M:404M", [4, 4], ":5M"


def parse_count(text: str | int | float) -> Fraction:
    """A non-negative count with an optional K/M/G/T suffix (powers of 1000), exactly."""
    if isinstance(text, bool):
        raise ValueError(f"expected a number, got {text!r}")
    if isinstance(text, (int, float)):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"expected a finite number, got {text!r}")
        value = Fraction(Decimal(str(text)))
    else:
        m = _COUNT_RE.fullmatch(text)
        if not m:
            raise ValueError(f"expected a number like 400M, 3.2G or 5e6, got {text!r}")
        try:
            number = Decimal(m.group(1))
        except InvalidOperation:
            raise ValueError(f"expected a number, got {text!r}") from None
        if abs(number.adjusted()) > 30:  # refuse before building a huge exact number
            raise ValueError(f"expected a count below 1e30, got {text!r}")
        value = Fraction(number) * _SUFFIXES[m.group(2).lower()]
    if value < 0:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    if value > 10**30:
        raise ValueError(f"expected a count below 1e30, got {text!r}")
    return value


class Bounds(BaseModel):
    """A closed integer range; None is an open side. Reads [lo, hi], "LO:HI" or one number."""

    model_config = _CONFIG

    lo: int | None = None
    hi: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return data
        if isinstance(data, str):
            if ":" not in data:
                raise ValueError(f'expected "LO:HI" (either side may be empty), got {data!r}')
            lo_text, hi_text = data.split(":", 1)
            sides: list[Any] = [lo_text.strip() or None, hi_text.strip() or None]
        elif isinstance(data, (list, tuple)):
            if len(data) != 2:
                raise ValueError(f"expected [lo, hi], got {len(data)} items")
            sides = list(data)
        elif isinstance(data, (int, float)) and not isinstance(data, bool):
            sides = [data, data]
        else:
            raise ValueError(f'expected [lo, hi] or "LO:HI", got {type(data).__name__}')
        for side in sides:
            if side is not None and (
                isinstance(side, bool) or not isinstance(side, (str, int, float))
            ):
                raise ValueError(f"each side must be a number or empty, got {type(side).__name__}")
        try:
            lo, hi = (None if s is None else parse_count(s) for s in sides)
        except ValueError as exc:
            raise ValueError(str(exc).split(", got ")[0]) from None
        # A count is an integer: round the range inwards.
        return {
            "lo": None if lo is None else math.ceil(lo),
            "hi": None if hi is None else math.floor(hi),
        }

    @model_validator(mode="after")
    def _check(self) -> Bounds:
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"empty range: {format_count(self.lo)} > {format_count(self.hi)}")
        if any(v is not None and v < 0 for v in (self.lo, self.hi)):
            raise ValueError("a count cannot be negative")
        return self

    def contains(self, value: int) -> bool:
        """Whether value is inside the range."""
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def __str__(self) -> str:
        side = {None: ""}
        return (
            f"{side.get(self.lo, format_count(self.lo))}:{side.get(self.hi, format_count(self.hi))}"
        )


def format_count(value: int | None) -> str:
    """A count the way parse_count reads it: 396M, 1.58G, 12345 (exact, never rounded)."""
    if value is None:
        return ""
    for suffix, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= scale:
            if value * 100 % scale:  # more than two decimals: the plain number reads better
                break
            text = f"{Decimal(value) / scale:f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix
    return str(value)


def parse_bounds(value: Bounds | str | int | tuple[Any, Any] | list[Any] | None) -> Bounds | None:
    """Bounds from "LO:HI", a (lo, hi) pair or one number; errors are SpaceErrors."""
    if value is None or isinstance(value, Bounds):
        return value
    try:
        return Bounds.model_validate(value)
    except ValidationError as exc:
        raise SpaceError(format_errors(exc, Bounds)) from None


Param = range_or_choice(
    QuantizedDist,
    ValuesDist,
    "param",
    "expected {dist: ..., low: ..., high: ..., quantum: ...} or {values: [...]}",
)


def _check_int_param(name: str, p: QuantizedDist | ValuesDist) -> None:
    """Integer spec fields need integer values: integer low, high and quantum, or int values."""
    if name not in INT_FIELDS:
        return
    numbers = p.values if isinstance(p, ValuesDist) else (p.low, p.high, p.quantum)
    if not all(isinstance(v, int) for v in numbers):
        raise ValueError(f"{name}: an integer field needs integer values and quantum")


# ---------------------------------------------------------------------------------------------
# Spaces


class Constraints(BaseModel):
    """Rules every sampled design must meet; an absent range is no constraint."""

    model_config = _CONFIG

    flops: Bounds | None = None
    params: Bounds | None = None
    acts: Bounds | None = None
    stages: Bounds | None = None
    allow_skipped_exponents: bool = Field(
        False, description="Keep regnet designs whose stage count differs from max exponent + 1."
    )

    @model_validator(mode="after")
    def _check(self) -> Constraints:
        st = self.stages
        if st is not None and ((st.lo or 1) > MAX_STAGES or (st.hi or 1) > MAX_STAGES):
            raise ValueError(f"stages: at most {MAX_STAGES} (write a range as [lo, hi]), got {st}")
        return self


class _SpaceBase(BaseModel):
    """Fields of every space: its name, description, input size, fixed spec fields, rules."""

    model_config = _CONFIG

    # Designs are named SPACE-ID (ids up to 7 digits) and written as SPACE-ID.yaml: the name
    # must leave room in a spec name (200) and a file name (255 bytes).
    space: str = Field(min_length=1, max_length=120, description="Name of the design space.")
    description: str = Field("", max_length=10_000)
    input_size: int = Field(224, ge=1, le=MAX_INPUT_SIZE)
    spec: dict[str, Any] = Field(
        default_factory=dict, description="Spec fields shared by every design (passed through)."
    )
    choices: dict[str, Annotated[tuple[str | bool | int, ...], ListOf]] = Field(
        default_factory=dict,
        description="Block kind and switches drawn per design, uniformly from each list.",
    )
    constraints: Constraints = Constraints()

    def combinations(self) -> tuple[dict[str, Any], ...]:
        """Every combination of the choices' values (one empty one without choices)."""
        keys = list(self.choices)
        return tuple(
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.choices[k] for k in keys))
        )

    def _check_choices(self, sampled: Mapping[str, Any]) -> None:
        for key, values in self.choices.items():
            if key not in CHOICE_FIELDS:
                close = difflib.get_close_matches(key, CHOICE_FIELDS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"choices.{key}: not a field drawn from a list ({', '.join(CHOICE_FIELDS)})"
                    + hint
                )
            if key in self.spec or key in sampled:
                raise ValueError(f"choices.{key}: both fixed and drawn; keep one")
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"choices.{key}: give distinct values, at least one")
        if math.prod(len(v) for v in self.choices.values()) > MAX_COMBINATIONS:
            raise ValueError(f"choices: more than {MAX_COMBINATIONS} combinations of values")


class RegNetSample(BaseModel):
    """The sampled parametric fields of a regnet space."""

    model_config = _CONFIG

    depth: Param | None = None
    w0: Param | None = None
    wa: Param | None = None
    wm: Param | None = None
    group_width: Param | None = None
    bottleneck_multiplier: Param | None = None

    def items(self) -> tuple[tuple[str, QuantizedDist | ValuesDist], ...]:
        """(field, distribution) of each sampled field, in drawing order."""
        return tuple((f, p) for f in REGNET_FIELDS if (p := getattr(self, f)) is not None)


class RegNetSpace(_SpaceBase):
    """Parametric designs sampled field by field and generated by the quantized linear rule."""

    family: Literal["regnet"]
    sample: RegNetSample

    @model_validator(mode="after")
    def _check(self) -> RegNetSpace:
        sampled = dict(self.sample.items())
        _check_fixed_keys(self.spec, set(ParametricSpec.model_fields), sampled)
        missing = [f for f in REGNET_FIELDS[:5] if f not in sampled and f not in self.spec]
        if missing:
            raise ValueError(f"sample: {', '.join(missing)} must be sampled or fixed under spec")
        for name, p in sampled.items():
            _check_int_param(name, p)
        self._check_choices(sampled)
        low = {f: p.min_value for f, p in sampled.items()}
        where = {f: f"sample.{f}" for f in sampled} | {f: f"choices.{f}" for f in self.choices}
        combos = self.combinations()
        for combo in combos[1:]:
            _with_choice(ParametricSpec, {"name": self.space, **self.spec, **low}, combo, where)
        base = _with_choice(
            ParametricSpec, {"name": self.space, **self.spec, **low}, combos[0], where
        )
        for name, p in sampled.items():
            for v in probe_values(p):
                _validated(ParametricSpec, {**base.model_dump(), name: v}, where)
        w0 = self.sample.w0
        if isinstance(w0, QuantizedDist) and w0.dist != "power2_uniform" and w0.quantum % base.q:
            # Every drawn w0 must be a multiple of q, so its quantum must be one.
            raise ValueError(
                f"sample.w0.quantum: must be a multiple of q={base.q}, got {w0.quantum}"
            )
        return self

    def fixed_spec(self, choice: Mapping[str, Any] | None = None) -> ParametricSpec:
        """A valid spec with the fixed fields and defaults (sampled fields at their low end),
        with `choice` (default: the first value of each choice)."""
        low = {f: p.min_value for f, p in self.sample.items()}
        choice = self.combinations()[0] if choice is None else choice
        return ParametricSpec.model_validate({"name": self.space, **self.spec, **low, **choice})


class AnyNetStage(BaseModel):
    """Distributions of one stage's width, depth, group width and bottleneck multiplier."""

    model_config = _CONFIG

    width: Param
    depth: Param
    group_width: Param
    bottleneck_multiplier: Param

    def items(self) -> tuple[tuple[StageField, QuantizedDist | ValuesDist], ...]:
        """(field, distribution) of each stage field, in drawing order."""
        return tuple((f, getattr(self, f)) for f in STAGE_FIELDS)


class StageCounts(BaseModel):
    """Stage counts a design draws from, uniformly: {values: [2, 3]}."""

    model_config = _CONFIG

    values: Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_STAGES)], ...], ListOf] = Field(
        min_length=1, max_length=MAX_STAGES
    )

    @model_validator(mode="after")
    def _check(self) -> StageCounts:
        if len(set(self.values)) != len(self.values):
            raise ValueError("values: every stage count must be listed once")
        return self


def _stage_count_tag(value: Any) -> str | None:
    if isinstance(value, (StageCounts, Mapping)):
        return "choice"
    return "int" if isinstance(value, int) and not isinstance(value, bool) else None


StageCountField = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=MAX_STAGES)], Tag("int")]
    | Annotated[StageCounts, Tag("choice")],
    Discriminator(
        _stage_count_tag,
        custom_error_type="num_stages",
        custom_error_message="expected a stage count or {values: [counts]}",
    ),
]


class AnyNetSpace(_SpaceBase):
    """Explicit designs of `num_stages` stages, each drawn from `per_stage` (paper's AnyNetX).

    `num_stages` is one count or a list each design draws its count from (uniformly, before
    its stages). `shared` fields are drawn once per design; `non_decreasing` fields are
    enforced by rejection (over a design's own stages), so accepted designs follow the
    independent draws restricted to that rule. Stages whose group width does not divide the
    bottleneck width are rejected too.
    """

    family: Literal["anynet"]
    num_stages: StageCountField = 4
    per_stage: AnyNetStage
    shared: Annotated[tuple[StageField, ...], ListOf] = ()
    non_decreasing: Annotated[tuple[StageField, ...], ListOf] = ()

    @model_validator(mode="after")
    def _check(self) -> AnyNetSpace:
        _check_fixed_keys(self.spec, set(ExplicitSpec.model_fields), {})
        if self.constraints.allow_skipped_exponents:
            raise ValueError("constraints.allow_skipped_exponents: only for regnet spaces")
        self._check_choices({})
        where = {f: f"choices.{f}" for f in self.choices}
        for combo in self.combinations():
            _with_choice(ExplicitSpec, self._fixed_data(combo), combo, where)
        for name, p in self.per_stage.items():
            _check_int_param(name, p)
        low = {f: p.min_value for f, p in self.per_stage.items()}
        for name, p in self.per_stage.items():
            for v in probe_values(p):
                _validated(StageSpec, {**low, name: v}, {f: f"per_stage.{f}" for f in low})
        return self

    def _fixed_data(self, choice: Mapping[str, Any]) -> dict[str, Any]:
        data = {"name": self.space, **self.spec, **choice}
        kind = BLOCK_KINDS.get(data.get("block"))  # type: ignore[arg-type]
        stage = {"width": 8, "depth": 1} | (
            {} if kind and not kind.bottleneck else {"group_width": 8}
        )
        return data | {"stages": [stage]}

    def fixed_spec(self, choice: Mapping[str, Any] | None = None) -> ExplicitSpec:
        """A valid spec with the fixed fields and defaults (one placeholder stage), with
        `choice` (default: the first value of each choice)."""
        choice = self.combinations()[0] if choice is None else choice
        return ExplicitSpec.model_validate(self._fixed_data(choice))

    @property
    def stage_counts(self) -> tuple[int, ...]:
        """The stage counts a design may have, in the order they are drawn from."""
        n = self.num_stages
        return n.values if isinstance(n, StageCounts) else (n,)

    @property
    def max_stages(self) -> int:
        return max(self.stage_counts)


Space = RegNetSpace | AnyNetSpace


def _check_fixed_keys(fixed: Mapping[str, Any], allowed: set[str], sampled: Mapping) -> None:
    for key in fixed:
        if key == "name":
            raise ValueError("spec.name: designs are named after the space and their sample id")
        if key == "input_size":
            # One input size per space, the one the constraints are counted at.
            raise ValueError("spec.input_size: give the space's input_size (top level) instead")
        if key == "stages" or key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed - {"name", "stages"}), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"spec.{key}: not a spec field this space can fix{hint}")
        if key in sampled:
            raise ValueError(f"spec.{key}: both fixed and sampled; keep one")


def _validated(cls: type[BaseModel], data: dict[str, Any], where: Mapping[str, str]) -> Any:
    """Validate `data` as `cls`; errors name the space field (`where`, default spec.FIELD)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            prefix = where.get(field, f"spec.{field}" if field else "spec")
            lines.append(f"{prefix}: {format_error({**err, 'loc': err['loc'][1:]}, cls)}")
        raise ValueError("; ".join(dict.fromkeys(lines))) from None


def _with_choice(
    cls: type[BaseModel], data: dict[str, Any], choice: Mapping[str, Any], where: Mapping[str, str]
) -> Any:
    """_validated with one combination of choice values; errors name the combination."""
    try:
        return _validated(cls, {**data, **choice}, where)
    except ValueError as exc:
        if not choice:
            raise
        named = ", ".join(f"{k}: {v}" for k, v in choice.items())
        raise ValueError(f"choices ({named}): {exc}") from None


# ---------------------------------------------------------------------------------------------
# Loading


_FAMILIES: dict[str, type[RegNetSpace] | type[AnyNetSpace]] = {
    "regnet": RegNetSpace,
    "anynet": AnyNetSpace,
}


def space_from_dict(data: Any, source: str = "<dict>") -> Space:
    """Validate a mapping as a design space (`family: regnet` or `family: anynet`)."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: expected a mapping of space fields, got {type(data).__name__}")
    if "space" not in data:
        raise SpaceError(
            f"{source}: not a design-space file (no top-level `space:` key naming the space)"
        )
    family = data.get("family")
    cls = _FAMILIES.get(family) if isinstance(family, str) else None
    if cls is None:
        raise SpaceError(f"{source}: family: must be one of regnet, anynet, got {family!r}")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise SpaceError(f"{source}: {format_errors(exc, cls)}") from None


def space_from_text(text: str, source: str = "<string>") -> Space:
    """Parse YAML text (safely: no objects, aliases or duplicate keys) as a design space."""
    return space_from_dict(parse_yaml(text, source, "space file", error=SpaceError), source)


def load_space_file(path: str | Path) -> Space:
    """Load and validate a YAML design-space file."""
    p = Path(path)
    return space_from_text(read_text_file(p, "space", error=SpaceError), str(p))


def load_space(source: str | Path | Mapping[str, Any] | Space) -> Space:
    """A space from a path, YAML text, a mapping, or a loaded space passed through."""
    if isinstance(source, (RegNetSpace, AnyNetSpace)):
        return source
    if isinstance(source, Mapping):
        return space_from_dict(source)
    if isinstance(source, Path):
        return load_space_file(source)
    if isinstance(source, str):
        return space_from_text(source) if is_yaml_text(source) else load_space_file(source)
    raise SpaceError(f"cannot load a design space from {type(source).__name__}")


def spec_fields_of(space: Space) -> tuple[str, ...]:
    """The spec fields a design record carries: name, the fixed ones and the sampled ones."""
    if isinstance(space, RegNetSpace):
        present = {"name", "block", *space.spec, *dict(space.sample.items()), *space.choices}
        return tuple(f for f in ParametricSpec.model_fields if f in present)
    present = {"name", "block", *space.spec, *space.choices, "stages"}
    return tuple(f for f in ExplicitSpec.model_fields if f in present)


__all__ = [
    "AnyNetSpace",
    "Bounds",
    "Constraints",
    "QuantizedDist",
    "RegNetSpace",
    "Space",
    "SpaceError",
    "StageCounts",
    "ValuesDist",
    "is_space_file",
    "load_space",
    "load_space_file",
    "parse_bounds",
    "parse_count",
    "space_from_dict",
    "space_from_text",
]
