"""regnet-space: RegNet design-space parameters to exact networks, counts and studies.

The design-space side (spec, plan, count) never imports torch; `build_model` does, lazily.
The study tools (sampling, analysis, scaling, fitting) load on first use, keeping
`import regnet_space` and the command line's start-up fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .complexity import Complexity, count
from .errors import BuildError, OutputError, PlanError, RegNetSpaceError, SpecError
from .generator import Plan, plan, to_explicit
from .spec import ExplicitSpec, ParametricSpec, Spec, dump_spec, load_spec

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.1.0"

# Public names that live in modules loaded on first access: name -> module.
_LAZY = {
    "DesignRecord": "sampling",
    "SampleError": "sampling",
    "SampleResult": "sampling",
    "sample": "sampling",
    "SpaceError": "space",
    "load_space": "space",
    "Analysis": "analysis",
    "analyze": "analysis",
    "Study": "results",
    "load_study": "results",
    "Fit": "fitting",
    "fit_spec": "fitting",
    "fit_widths": "fitting",
    "Scaled": "scaling",
    "scale_spec": "scaling",
    # torch-side tools (import torch when first used)
    "ConvertError": "convert",
    "convert_state_dict": "convert",
    "load_converted": "convert",
    "read_checkpoint": "convert",
    "build_backbone": "backbone",
    "feature_info": "backbone",
    "inference_model": "inference",
    "export_onnx": "export",
    "export_program": "export",
    "torch_flops": "torch_counter",
    "load_any_spec": "interop",
    "hf_config_from_spec": "interop",
    "spec_from_hf_config": "interop",
    "timm_cfg_from_spec": "interop",
    "spec_from_timm_cfg": "interop",
    "load_pycls_yaml": "pycls_config",
    "pycls_yaml_from_spec": "pycls_config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regnet_space' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    *_LAZY,
    "BuildError",
    "Complexity",
    "ExplicitSpec",
    "OutputError",
    "ParametricSpec",
    "Plan",
    "PlanError",
    "RegNetSpaceError",
    "Spec",
    "SpecError",
    "build_model",
    "count",
    "dump_spec",
    "load_spec",
    "plan",
    "to_explicit",
]


def build_model(
    spec: Spec | Plan,
    with_head: bool = True,
    *,
    zero_init_last_bn: bool = False,
    problem_type: str | None = None,
    force: bool = False,
) -> nn.Module:
    """Build the PyTorch model of a spec or plan (imports torch on first use).

    See `regnet_space.model.build_model`; `force` skips the too-large-to-allocate guard.
    """
    from .model import build_model as _build

    return _build(
        spec,
        with_head,
        zero_init_last_bn=zero_init_last_bn,
        problem_type=problem_type,
        force=force,
    )
