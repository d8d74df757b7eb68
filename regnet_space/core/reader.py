"""The one spec reader: every spec argument, of every form, is read by `read_spec`.

A source is a Spec, a mapping or a `RegNetConfig`-like object, `-` (stdin), YAML or JSON
text, a file, a Hugging Face snapshot folder (its config.json) or a shipped model name. It is
read once, and its form is told once from the content, not the file name: a `MODEL` section
is pycls's, Hugging Face's keys (`model_type`, `hidden_sizes`, ...) Hugging Face's, spec
fields ours. Each form has one function (`spec_from_dict`, `spec_from_hf_config`,
`spec_from_pycls_dict`). Every failure is one line of SpecError.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..infra.parsing import parse_json, parse_json_or_yaml
from ..infra.reading import is_yaml_text, read_text_file
from .errors import SpecError
from .hf import CONFIG_FILE, hf_config_name, is_hf_config, read_hf_config, spec_from_hf_config
from .names import EXAMPLES, resolve_name, suggest_name
from .pycls import spec_from_pycls_dict
from .spec import ExplicitSpec, ParametricSpec, Spec, spec_from_dict

STDIN = "-"
FORMS = (
    "a regnet-space spec (YAML), a Hugging Face config.json (or its folder), a pycls config "
    f"(YAML with a MODEL section) or a shipped model name ({EXAMPLES})"
)
# Keys that make a mapping one of ours (its own validation then names what is wrong).
_OUR_KEYS = (set(ParametricSpec.model_fields) | set(ExplicitSpec.model_fields)) - {"name"}
_SPACE_KEYS = {"space", "family"}  # a design-space file: spec_from_dict says what it is


@dataclass(frozen=True)
class LoadedSpec:
    """A spec and its source as messages and reports name it (a path, `<stdin>`, the text)."""

    spec: Spec
    source: str


def load_spec(source: str | Path | Mapping[str, Any] | Spec | Any) -> Spec:
    """A spec from any accepted form: a Spec, a mapping or `RegNetConfig`, YAML or JSON text,
    `-` for stdin, a path (our YAML, a Hugging Face config.json or its folder, a pycls YAML)
    or a shipped model name as any library spells it."""
    return read_spec(source).spec


def read_spec(source: str | Path | Mapping[str, Any] | Spec | Any) -> LoadedSpec:
    """`load_spec`'s spec with the name of its source."""
    if isinstance(source, (ParametricSpec, ExplicitSpec)):
        return LoadedSpec(source, source.name)
    if isinstance(source, Path):
        return LoadedSpec(_read_path(source), str(source))
    if not isinstance(source, str):
        shown = "<dict>" if isinstance(source, Mapping) else "<input>"
        return LoadedSpec(spec_from_data(source, shown), shown)
    if source == STDIN:
        text = sys.stdin.read()
        return LoadedSpec(spec_from_data(_parse(text, "<stdin>"), "<stdin>"), "<stdin>")
    if is_yaml_text(source):
        return LoadedSpec(spec_from_data(_parse(source, "<string>"), "<string>"), source)
    path = Path(source)
    if _exists(path):  # an existing file wins over a name
        return LoadedSpec(_read_path(path), source)
    named = resolve_name(source)
    if named is not None:
        return LoadedSpec(_read_path(named), str(named))
    hint = suggest_name(source)
    guess = f"; did you mean {hint}?" if hint else ""
    raise SpecError(f"{source}: no such file, and not a shipped model name{guess} ({FORMS})")


def spec_from_data(data: Any, source: str = "<dict>", name: str | None = None) -> Spec:
    """The spec of parsed data or a config object, its form told by its keys; `name` for a
    form whose data has none (a Hugging Face or pycls config named after its file)."""
    if isinstance(data, Mapping) and "MODEL" in data:
        return spec_from_pycls_dict(data, source, name)
    if is_hf_config(data):
        return spec_from_hf_config(data, name or "hf-regnet", source)
    if isinstance(data, Mapping):
        if not (_OUR_KEYS | _SPACE_KEYS) & {str(k) for k in data}:
            raise SpecError(f"{source}: not a spec; expected {FORMS}")
        if name is not None and "name" not in data:
            data = {**data, "name": name}
    return spec_from_dict(data, source)  # names what a non-mapping is


def _parse(text: str, source: str) -> Any:
    """JSON text as JSON; YAML, flow style (`{name: a, ...}`) included, as YAML."""
    return parse_json_or_yaml(text, source, "spec", error=SpecError)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except ValueError:  # a NUL byte: no file has that name
        return False
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise SpecError(f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}") from None


def _read_path(path: Path) -> Spec:
    """The spec of a file or a Hugging Face snapshot folder, read once."""
    if path.is_dir():
        config = path / CONFIG_FILE
        if not config.exists():  # a FIFO there is named by the reader, never opened blocking
            raise SpecError(f"{path}: is a directory without {CONFIG_FILE}; expected {FORMS}")
        data = read_hf_config(config, error=SpecError)
        return spec_from_hf_config(data, hf_config_name(config), str(config))
    text = read_text_file(path, "spec", error=SpecError)
    source = str(path)
    data = (
        parse_json(text, source, error=SpecError)
        if path.suffix == ".json"
        else _parse(text, source)
    )
    return spec_from_data(data, source, hf_config_name(path) if is_hf_config(data) else None)
