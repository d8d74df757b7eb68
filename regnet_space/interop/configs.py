"""One spec input everywhere: our YAML, a Hugging Face config.json, a pycls config, a model name.

This is the loader behind the public `regnet_space.load_spec` and every command that takes a
SPEC. It lives here, above `core`, because the Hugging Face and pycls readers are interop's;
`core.spec.load_spec` is the core-only part (our YAML and the shipped names), which the
numbers-only sides use. The form is told from the content, not the file name alone: JSON or
YAML with `model_type`/`hidden_sizes` is Hugging Face's, YAML with a `MODEL` section pycls's,
anything with spec fields ours; a string that is no file is looked up in the names table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import SpecError
from ..core.names import EXAMPLES, resolve_name, suggest_name
from ..core.spec import ExplicitSpec, ParametricSpec, Spec, load_spec_file, spec_from_dict
from ..infra.parsing import parse_json, parse_json_or_yaml, parse_yaml
from ..infra.reading import is_yaml_text, read_text_file
from .hf import hf_config_name, load_hf_config, spec_from_hf_config
from .pycls import spec_from_pycls_dict

FORMS = (
    "a regnet-space spec (YAML), a Hugging Face config.json (or its folder), a pycls config "
    f"(YAML with a MODEL section) or a shipped model name ({EXAMPLES})"
)
# Keys that make a mapping one of ours (its own validation then names what is wrong).
_OUR_KEYS = (set(ParametricSpec.model_fields) | set(ExplicitSpec.model_fields)) - {"name"}
_HF_KEYS = {"model_type", "hidden_sizes", "groups_width", "layer_type", "embedding_size"}


def _is_hf(data: Mapping[str, Any]) -> bool:
    return bool(_HF_KEYS & set(data))  # none of them is a field of ours


def spec_from_any_mapping(data: Any, source: str = "<dict>", name: str | None = None) -> Spec:
    """A parsed spec, Hugging Face config or pycls config, told apart by their keys."""
    if isinstance(data, Mapping):
        if "MODEL" in data:
            return spec_from_pycls_dict(data, source, name)
        if _is_hf(data):
            return spec_from_hf_config(data, name or "hf-regnet", source)
        if not (_OUR_KEYS | {"space", "family"}) & {str(k) for k in data}:
            raise SpecError(f"{source}: not a spec; expected {FORMS}")
        if name is not None and "name" not in data:
            data = {**data, "name": name}
    elif hasattr(data, "model_type") and hasattr(data, "hidden_sizes"):  # a RegNetConfig
        return spec_from_hf_config(data, name or "hf-regnet", source)
    return spec_from_dict(data, source)  # names what a non-mapping is


def _load_path(p: Path) -> Spec:
    if p.is_dir():
        if (p / "config.json").exists():  # a FIFO there is named by the reader
            return load_hf_config(p)
        raise SpecError(f"{p}: is a directory without config.json; expected {FORMS}")
    if not p.exists():
        raise SpecError(f"{p}: no such file")
    text = read_text_file(p, "spec", error=SpecError)
    if p.suffix == ".json":
        data = parse_json(text, str(p), error=SpecError)
    else:  # JSON text as JSON; YAML, flow style (`{name: a, ...}`) included, as YAML
        data = parse_json_or_yaml(text, str(p), "spec", error=SpecError)
    if isinstance(data, Mapping) and _is_hf(data):
        return spec_from_hf_config(data, hf_config_name(p), str(p))
    return spec_from_any_mapping(data, str(p))


def load_any_spec(source: str | Path | Mapping[str, Any] | Spec | Any) -> Spec:
    """A spec from any accepted form: a Spec, a mapping or `RegNetConfig`, YAML text, a path
    (our YAML, Hugging Face config.json or its folder, pycls YAML) or a shipped model name."""
    if isinstance(source, (ParametricSpec, ExplicitSpec)):
        return source
    if isinstance(source, Path):
        return _load_path(source)
    if isinstance(source, str):
        if is_yaml_text(source):
            return spec_from_any_mapping(
                parse_yaml(source, "<string>", "spec", error=SpecError), "<string>"
            )
        p = Path(source)
        if p.exists():
            return _load_path(p)
        named = resolve_name(source)
        if named is not None:
            return load_spec_file(named)
        hint = suggest_name(source)
        guess = f"; did you mean {hint}?" if hint else ""
        raise SpecError(f"{source}: no such file, and not a shipped model name{guess} ({FORMS})")
    return spec_from_any_mapping(source, "<dict>" if isinstance(source, Mapping) else "<input>")
