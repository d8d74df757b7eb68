"""Error types of the format and the numbers; each one is a user-facing, one-line message."""

from __future__ import annotations

from ..infra.errors import InputError, RegNetSpaceError


class SpecError(InputError):
    """A spec (file, text, dict or peer config) that does not parse or breaks a rule."""


class PlanError(RegNetSpaceError, ValueError):
    """A valid spec whose generated design is impossible (for example, incompatible widths)."""


class BuildError(RegNetSpaceError):
    """A design that is refused for building (too large to allocate) or a bad build option."""


class InteropError(SpecError):
    """A peer library's config (Hugging Face, pycls, timm) that does not describe a RegNet
    this package builds, or a spec that a peer's config cannot express."""
