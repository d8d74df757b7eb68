"""regnet-space: RegNet design-space parameters to exact networks, counts and studies.

The design-space side (spec, plan, count) never imports torch; `build_model` does, lazily.
Every public name loads its module on first use (the error types, the spec models, numpy and
the study tools included): importing the package runs no other module of it, so it is fast,
and the command (regnet_space._startup) can install its Ctrl-C handler before anything heavy.
Importing it changes no process-wide state.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from torch import nn

    from .core.generator import Plan
    from .core.spec import Spec

__version__ = "0.1.0"

# Public names that live in modules loaded on first access: name -> "module" or "module:attr".
_LAZY = {
    "BuildError": "core.errors",
    "InteropError": "core.errors",
    "PlanError": "core.errors",
    "SpecError": "core.errors",
    "OutputError": "infra.errors",
    "RegNetSpaceError": "infra.errors",
    "Complexity": "core.complexity",
    "count": "core.complexity",
    "Plan": "core.generator",
    "plan": "core.generator:make_plan",  # the public name of make_plan
    "to_explicit": "core.generator",
    "ExplicitSpec": "core.spec",
    "ParametricSpec": "core.spec",
    "Spec": "core.spec",
    "dump_spec": "core.spec",
    # every spec form: our YAML, Hugging Face config.json, pycls YAML, shipped model names
    "load_spec": "core.reader",
    "DesignRecord": "space.records",
    "SampleError": "space.sampling",
    "SampleResult": "space.records",
    "sample": "space.sampling",
    "SpaceError": "space.space",
    "load_space": "space.space",
    "Analysis": "analysis.stats",
    "analyze": "analysis.stats",
    "ResultSet": "analysis.results",
    "load_study": "analysis.results",
    "Fit": "space.fitting",
    "fit_spec": "space.fitting",
    "fit_widths": "space.fitting",
    "Scaled": "space.scaling",
    "scale_spec": "space.scaling",
    # torch-side tools (import torch when first used)
    "ConvertError": "interop.checkpoints",
    "convert_state_dict": "interop.checkpoints",
    "load_converted": "interop.checkpoints",
    "read_checkpoint": "interop.checkpoints",
    "build_backbone": "nn.backbone",
    "feature_info": "nn.backbone",
    "inference_model": "nn.inference",
    "export_onnx": "nn.export",
    "export_program": "nn.export",
    "torch_flops": "nn.counters",
    "resolve_name": "core.names",
    "hf_config_from_spec": "core.hf",
    "spec_from_hf_config": "core.hf",
    "timm_cfg_from_spec": "interop.timm",
    "spec_from_timm_cfg": "interop.timm",
    "spec_from_pycls_yaml": "core.pycls",
    "pycls_yaml_from_spec": "core.pycls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regnet_space' has no attribute {name!r}")
    module, _, attr = module.partition(":")
    return getattr(importlib.import_module(f".{module}", __name__), attr or name)


__all__ = [*_LAZY, "build_model"]


def build_model(
    spec: Spec | Plan,
    with_head: bool = True,
    *,
    zero_init_last_bn: bool = False,
    problem_type: str | None = None,
    force: bool = False,
    output_hidden_states: bool = False,
    torchscript: bool = False,
) -> nn.Module:
    """Build the PyTorch model of a spec or plan (imports torch on first use).

    See `regnet_space.nn.model.build_model`; `force` skips the too-large-to-allocate guard;
    `output_hidden_states` and `torchscript` (tuple outputs) are transformers' switches.
    """
    from .nn.model import build_model as _build

    return _build(
        spec,
        with_head,
        zero_init_last_bn=zero_init_last_bn,
        problem_type=problem_type,
        force=force,
        output_hidden_states=output_hidden_states,
        torchscript=torchscript,
    )
