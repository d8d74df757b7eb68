"""The declarative format and its numbers: specs, names, presets, the width generator, the
block definitions and exact counts.

Above `infra` only: it imports numpy, pydantic and `infra`, no other side of the package, and
never torch (a test checks this in a fresh interpreter).
"""
