"""Design spaces: space files, sampling under constraints, bulk counting, scaling, fitting.

Imports only `core` (and numpy); never torch, so sampling millions of designs starts fast.
"""
