"""Design spaces: space files, distributions, sampling under constraints, bulk counting, scaling
and fitting.

Imports only `core` (and numpy); never torch, so sampling millions of designs starts fast.
"""
