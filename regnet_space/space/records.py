"""What sampling yields: one record per design, the progress of a run, and its result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.spec import Spec, spec_from_dict
from .space import Constraints


@dataclass(frozen=True)
class DesignRecord:
    """One sampled design: its spec fields, stage plan and paper-convention counts."""

    id: int  # sample id: position among the accepted designs (-1 for a rejected one)
    spec: Mapping[str, Any]  # spec fields; a valid spec of this design
    input_size: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]
    flops: int
    params: int
    acts: int

    def to_dict(self) -> dict[str, Any]:
        """The output record: id, spec fields, input size, stage plan and counts."""
        return {
            "id": self.id,
            **{k: (list(map(dict, v)) if k == "stages" else v) for k, v in self.spec.items()},
            "input_size": self.input_size,
            "widths": list(self.widths),
            "depths": list(self.depths),
            "group_widths": list(self.group_widths),
            "flops": self.flops,
            "params": self.params,
            "acts": self.acts,
        }

    def to_spec(self) -> Spec:
        """The design as a validated spec."""
        return spec_from_dict(self.to_dict_spec(), f"design {self.id}")

    def to_dict_spec(self) -> dict[str, Any]:
        """Only the spec fields, as a plain mapping."""
        return {k: v for k, v in self.to_dict().items() if k in self.spec}


@dataclass(frozen=True)
class SampleProgress:
    """Where a running sample is: tries so far and designs accepted."""

    tries: int
    accepted: int
    requested: int
    max_tries: int
    elapsed: float


@dataclass(frozen=True)
class SampleResult:
    """Accepted designs in order, with how many tries it took and why the others were not."""

    space: str
    seed: int
    requested: int
    input_size: int
    constraints: Constraints
    records: tuple[DesignRecord, ...]
    tries: int
    rejected: Mapping[str, int]  # reason -> count, reasons of REASONS and "duplicate"
    closest: tuple[DesignRecord, ...]  # rejected for complexity only, nearest the bounds first

    @property
    def accepted(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        return len(self.records) == self.requested

    @property
    def acceptance_rate(self) -> float:
        return len(self.records) / self.tries if self.tries else 0.0

    def __len__(self) -> int:
        """The number of accepted designs."""
        return len(self.records)

    def __iter__(self) -> Iterator[DesignRecord]:
        """The accepted designs, in order."""
        return iter(self.records)

    def __repr__(self) -> str:
        # The default repr lists every record: thousands of lines in a notebook.
        return (
            f"SampleResult(space={self.space!r}, {len(self.records):,}/{self.requested:,} "
            f"designs, seed={self.seed}, input_size={self.input_size}, {self.tries:,} tries)"
        )
