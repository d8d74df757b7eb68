"""The one error type of studies: a bad recipe, data root, study file or run folder."""

from __future__ import annotations

from ..infra.errors import RegNetSpaceError


class StudyError(RegNetSpaceError, ValueError):
    """A one-line user error of a study, a recipe, a data set or a training run (exit 2)."""
