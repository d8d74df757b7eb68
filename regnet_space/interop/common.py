"""What the peer-config converters share: their error type and spec validation."""

from __future__ import annotations

from typing import Any

from ..core.spec import Spec, spec_from_dict
from ..infra.errors import RegNetSpaceError


class InteropError(RegNetSpaceError, ValueError):
    """A peer config that does not describe a RegNet this package builds, or the reverse."""


def validated_spec(fields: dict[str, Any], source: str) -> Spec:
    """Validate spec fields built from a peer config; errors become one-line InteropErrors."""
    try:
        return spec_from_dict(fields, source)
    except RegNetSpaceError as exc:
        raise InteropError(str(exc)) from None
