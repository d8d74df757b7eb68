"""Other libraries' checkpoints (Hugging Face, timm, torchvision, pycls) and timm's configs.

Checkpoint conversion imports torch and `nn`; timm's config converter imports only `core`.
No peer library is imported unless a function says so. Hugging Face and pycls configs are
format knowledge, in `core.hf` and `core.pycls`, so that the one spec reader can read them.
"""
