"""Any spec form from a file: our YAML, a pycls config or a Hugging Face config.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..core.loading import parse_yaml, read_text_file
from ..core.spec import Spec, spec_from_dict
from .hf import load_hf_config


def load_any_spec(path: str | Path) -> Spec:
    """A spec file, a pycls config (YAML with a MODEL section) or a Hugging Face config.json."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        return load_hf_config(p)
    text = read_text_file(p)
    data = parse_yaml(text, str(p))  # the one safe loader: no aliases, depth and size limits
    if isinstance(data, Mapping) and "MODEL" in data:
        from .pycls import spec_from_pycls_yaml

        return spec_from_pycls_yaml(text, str(p))
    return spec_from_dict(data, str(p))
