"""Results of design-space studies: result files, statistics (EDFs, good ranges), plots, report.

May import `core` (and matplotlib for pictures, lazily); never torch.
"""
