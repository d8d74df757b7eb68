"""The declarative format and its numbers: specs, the width generator, exact counts, safe I/O.

The bottom layer: numpy, pydantic and PyYAML only. It imports no other side of the package
and never imports torch (a test checks this in a fresh interpreter).
"""
