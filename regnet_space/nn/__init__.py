"""PyTorch: the RegNet model (Hugging Face module tree), backbone, inference form, export, counters.

The first side that imports torch. It builds from `core` plans and imports nothing above it.
"""
