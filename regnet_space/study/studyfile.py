"""Study files: which space, how many designs, which recipe, data and executor; resolved up front.

A study file is YAML with exactly the keys of `StudyFile`. Resolving it loads the space and
the recipe (paths relative to the study file), samples the n designs, draws the per-trial
recipe fields of `search`, validates every trial's recipe and checks the data root, so that
every user error is one line before any training starts and before the database exists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.validation import format_errors
from ..infra.errors import RegNetSpaceError
from ..infra.parsing import parse_yaml
from ..infra.reading import read_text_file
from ..space.distributions import draw_choice, draw_range, range_or_choice
from ..space.records import DesignRecord
from ..space.sampling import sample
from ..space.space import Space, load_space, parse_bounds
from .data import DataSpec, check_data
from .errors import StudyError
from .recipe import Recipe, load_recipe, recipe_with
from .scheduler import NONE, SchedulerConfig

_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
MAX_TRIALS = 100_000
MAX_RETRIES = 100
# Search keys are the recipe's own field names; these short names are aliases of two of them.
ALIASES = {"lr": "base_lr", "wd": "weight_decay"}
UNSEARCHABLE = ("name", "seed")  # a trial's recipe keeps the study's name and seed
SEARCH_SALT = 0x5EA4C4  # keeps the search draws independent of the design draws of one seed

Number = int | float
Bound = str | int | list[Any] | None


class StudyConstraints(BaseModel):
    """Overrides of the space's constraints, in the `sample` syntax ("4M:12M", [lo, hi])."""

    model_config = _CONFIG

    flops: Bound = None
    params: Bound = None
    acts: Bound = None
    stages: Bound = None


class SearchRange(BaseModel):
    """A recipe field drawn per trial from [low, high]: uniform or log-uniform.

    Integer low and high draw integers (uniform over the integers, or log-uniform rounded).
    """

    model_config = _CONFIG

    dist: Literal["uniform", "log_uniform"]
    low: Number
    high: Number


class SearchChoice(BaseModel):
    """A recipe field drawn per trial uniformly from a list."""

    model_config = _CONFIG

    values: list[Number | str | bool] = Field(min_length=1, max_length=4096)


SearchParam = range_or_choice(
    SearchRange,
    SearchChoice,
    "search",
    "expected {dist: uniform|log_uniform, low: ..., high: ...} or {values: [...]}",
)


class LocalExecutorConfig(BaseModel):
    """Long-lived worker processes on this machine; torch threads = cores // workers."""

    model_config = _CONFIG

    kind: Literal["local"]
    workers: int = Field(1, ge=1, le=1024)
    threads: int | None = Field(None, ge=1, le=4096, description="torch threads per trial")


class RayExecutorConfig(BaseModel):
    """One Ray task per trial; no address starts a local Ray, `auto` or ray:// joins one."""

    model_config = _CONFIG

    kind: Literal["ray"]
    address: str | None = Field(None, min_length=1, max_length=1000)
    cpus_per_trial: Number = Field(1, gt=0, le=4096)
    gpus_per_trial: Number = Field(0, ge=0, le=64)


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="kind")]


class StudyFile(BaseModel):
    """The study file's keys, exactly."""

    model_config = _CONFIG

    name: str = Field(min_length=1, max_length=200)
    space: str | dict[str, Any] = Field(description="space file (relative path) or inline space")
    n: int = Field(ge=1, le=MAX_TRIALS, description="designs to train")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    constraints: StudyConstraints = StudyConstraints()
    recipe: str | dict[str, Any] = Field(description="recipe file (relative path) or inline")
    search: dict[str, SearchParam] = Field(default_factory=dict)
    data: DataSpec
    executor: ExecutorConfig = LocalExecutorConfig(kind="local")
    retries: int = Field(0, ge=0, le=MAX_RETRIES)
    storage: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="folder of the trials' run folders (relative to the study file, or "
        "absolute; default <db stem>.runs beside the database)",
    )
    keep: str = Field(
        "best-5",
        pattern=r"^(all|none|best-[1-9][0-9]{0,5})$",
        description="weights kept once trials end: all, none or best-K",
    )
    trial_timeout: Number | None = Field(
        None, gt=0, le=10**7, description="minutes one attempt of a trial may take"
    )
    scheduler: SchedulerConfig = Field(
        NONE, description="early stopping: {kind: none | asha | median, grace_epochs, ...}"
    )


# The keys that may change between runs of one database: how and where trials run, not what
# they compute. Every other key decides results (and the study's hash), except that n may rise.
OPERATIONAL_KEYS = ("executor", "retries", "storage", "keep", "trial_timeout")


def keep_count(keep: str) -> int | None:
    """Finished trials whose weights are kept: None for all, else K (0 for none)."""
    if keep == "all":
        return None
    return 0 if keep == "none" else int(keep.removeprefix("best-"))


@dataclass(frozen=True)
class TrialPlan:
    """One trial to run: the sampled design and its recipe fields drawn by `search`."""

    record: DesignRecord
    recipe_fields: Mapping[str, Any]


@dataclass(frozen=True)
class ResolvedStudy:
    """A study file with everything loaded, sampled and checked."""

    path: Path
    file: StudyFile
    space: Space
    recipe: Recipe
    data: DataSpec  # root resolved relative to the study file
    trials: tuple[TrialPlan, ...]
    canonical: str  # canonical JSON of what decides the trials' results
    digest: str  # sha256 of `canonical`

    @property
    def name(self) -> str:
        return self.file.name

    def digest_at(self, n: int) -> str:
        """The digest this study had with `n` designs (a database of fewer trials grows)."""
        data = json.loads(self.canonical)
        data["n"] = n
        return _digest(_canonical(data))

    def storage(self, db_path: str | Path) -> Path:
        """The storage folder (absolute): the `storage` key relative to the study file, or
        `<db stem>.runs` beside the database."""
        if self.file.storage is not None:
            return _relative(self.path.absolute().parent, self.file.storage).absolute()
        db = Path(db_path).absolute()
        return db.parent / f"{db.stem}.runs"

    def trial_recipe(self, recipe_fields: Mapping[str, Any]) -> Recipe:
        """The recipe of one trial: the study's with its sampled fields."""
        return recipe_with(self.recipe, recipe_fields)


def default_db_path(study_path: str | Path) -> Path:
    """`<study file stem>.db` in the current folder."""
    return Path(f"{Path(study_path).stem}.db")


def _load_file(path: Path) -> StudyFile:
    try:
        text = read_text_file(path, "study")
        data = parse_yaml(text, str(path), "study")
    except RegNetSpaceError as exc:
        raise StudyError(str(exc)) from None
    if not isinstance(data, Mapping):
        raise StudyError(f"{path}: expected a mapping of study keys, got {type(data).__name__}")
    try:
        return StudyFile.model_validate(dict(data))
    except ValidationError as exc:
        raise StudyError(f"{path}: {format_errors(exc, StudyFile)}") from None


def _relative(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _load_space(file: StudyFile, base: Path, where: Path) -> Space:
    try:
        if isinstance(file.space, str):
            return load_space(_relative(base, file.space))
        return load_space(file.space)
    except RegNetSpaceError as exc:
        raise StudyError(f"{where}: space: {exc}") from None


def _load_recipe(file: StudyFile, base: Path, where: Path) -> Recipe:
    try:
        if isinstance(file.recipe, str):
            return load_recipe(_relative(base, file.recipe))
        return load_recipe(file.recipe)
    except RegNetSpaceError as exc:
        raise StudyError(f"{where}: recipe: {exc}") from None


def _search_fields(file: StudyFile, where: Path) -> dict[str, SearchRange | SearchChoice]:
    """Search keys mapped onto recipe field names; unknown or repeated fields refused."""
    out: dict[str, SearchRange | SearchChoice] = {}
    for key, param in file.search.items():
        field = ALIASES.get(key, key)
        if field not in Recipe.model_fields or field in UNSEARCHABLE:
            valid = ", ".join(sorted(f for f in Recipe.model_fields if f not in UNSEARCHABLE))
            aliases = ", ".join(f"{k} = {v}" for k, v in ALIASES.items())
            raise StudyError(
                f"{where}: search.{key}: not a recipe field that can be searched; searchable: "
                f"{valid} (aliases: {aliases})"
            )
        if field in out:
            raise StudyError(f"{where}: search.{key}: {field} is searched twice")
        if isinstance(param, SearchRange):
            lo, hi = param.low, param.high
            if lo > hi:
                raise StudyError(f"{where}: search.{key}: low {lo} is above high {hi}")
            if param.dist == "log_uniform" and lo <= 0:
                raise StudyError(f"{where}: search.{key}: log_uniform needs low > 0, got {lo}")
        out[field] = param
    return out


def draw_search(
    search: Mapping[str, SearchRange | SearchChoice], n: int, seed: int
) -> list[dict[str, Any]]:
    """The recipe fields of n trials, each field drawn from its own seeded generator."""
    columns: dict[str, list[Any]] = {}
    for field, p in search.items():
        # One stream per field: the first n draws stay the same when n rises, whatever the
        # other fields are.
        rng = np.random.default_rng([seed, SEARCH_SALT, zlib.crc32(field.encode())])
        if isinstance(p, SearchChoice):
            columns[field] = draw_choice(rng, p.values, n)
        else:
            columns[field] = draw_range(rng, p.dist, p.low, p.high, n)
    return [{f: columns[f][i] for f in search} for i in range(n)]


def _check_scheduler(
    file: StudyFile, recipe: Recipe, search: Mapping[str, Any], where: Path
) -> None:
    """A scheduler compares trials epoch by epoch: one epoch count, and a stop before it."""
    sched = file.scheduler
    if sched.kind == "none":
        return
    if "epochs" in search:
        raise StudyError(
            f"{where}: scheduler: {sched.kind} compares trials at equal epochs of one "
            "schedule; it cannot be combined with searching epochs"
        )
    if sched.grace_epochs >= recipe.epochs:
        raise StudyError(
            f"{where}: scheduler.grace_epochs: {sched.grace_epochs} leaves no epoch to stop "
            f"at (the recipe trains {recipe.epochs}); give fewer than {recipe.epochs}"
        )


def _bounds(c: StudyConstraints, where: Path) -> dict[str, Any]:
    """The constraints the study file overrides, parsed as `sample` parses them."""
    bounds = {}
    for key in ("flops", "params", "acts", "stages"):
        value = getattr(c, key)
        if value is not None:
            try:
                bounds[key] = parse_bounds(tuple(value) if isinstance(value, list) else value)
            except RegNetSpaceError as exc:
                raise StudyError(f"{where}: constraints.{key}: {exc}") from None
    return bounds


def resolve(path: str | Path) -> ResolvedStudy:
    """Load a study file and everything it names; sample the designs; check the data root."""
    where = Path(path)
    file = _load_file(where)
    base = where.resolve().parent
    space = _load_space(file, base, where)
    recipe = _load_recipe(file, base, where)
    search = _search_fields(file, where)
    try:
        data = check_data(file.data, base=base)
    except RegNetSpaceError as exc:
        raise StudyError(f"{where}: data: {exc}") from None
    bounds = _bounds(file.constraints, where)
    try:
        sampled = sample(space, file.n, seed=file.seed, input_size=recipe.test_size, **bounds)
    except RegNetSpaceError as exc:
        raise StudyError(f"{where}: {exc}") from None
    _check_scheduler(file, recipe, search, where)
    fields = draw_search(search, file.n, file.seed)
    for i, f in enumerate(fields):
        try:
            recipe_with(recipe, f)
        except RegNetSpaceError as exc:
            raise StudyError(f"{where}: search: trial {i}: {exc}") from None
    trials = tuple(TrialPlan(record, f) for record, f in zip(sampled.records, fields, strict=True))
    canonical_data = {
        "name": file.name,
        "space": space.model_dump(mode="json"),
        "n": file.n,
        "seed": file.seed,
        "constraints": {k: str(v) for k, v in bounds.items()},
        "input_size": recipe.test_size,
        "recipe": recipe.model_dump(mode="json"),
        "search": {k: v.model_dump(mode="json") for k, v in search.items()},
        "data": file.data.model_dump(mode="json"),
    }
    if file.scheduler.kind != "none":  # studies without one keep the hash they always had
        canonical_data["scheduler"] = file.scheduler.model_dump(mode="json")
    canonical = _canonical(canonical_data)
    return ResolvedStudy(
        path=where,
        file=file,
        space=space,
        recipe=recipe,
        data=data,
        trials=trials,
        canonical=canonical,
        digest=_digest(canonical),
    )


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_trial(executor: LocalExecutorConfig | RayExecutorConfig) -> int:
    """torch threads of one trial: the local executor's share of cores, or Ray's CPUs."""
    if isinstance(executor, RayExecutorConfig):
        return max(1, math.floor(executor.cpus_per_trial))
    if executor.threads is not None:
        return executor.threads
    return max(1, cores() // executor.workers)
