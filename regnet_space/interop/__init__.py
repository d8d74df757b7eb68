"""Other libraries' configs and checkpoints: Hugging Face, timm, torchvision and pycls.

Config converters import only `core`; checkpoint conversion imports torch and `nn`.
No peer library is imported unless a function says so.
"""
