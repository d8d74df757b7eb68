"""`regnet-space build`: one spec in, its PyTorch model built, run once and described."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import BuildError
from ..infra.text import clean
from .args import (
    ALLOW_LARGE_HELP,
    COMMANDS,
    COUNTER_HELP,
    COUNTERS,
    INPUT_SIZE_HELP,
    JSON_HELP,
    SPEC_HELP,
    input_size,
)
from .progress import Progress

if TYPE_CHECKING:
    from ..core.complexity import Complexity
    from ..core.generator import Plan
    from ..core.spec import Spec
    from ..infra.outputs import OutputSet
    from .render import SpecSummary

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


def _stage_records(p: Plan, c: Complexity) -> list[dict[str, Any]]:
    """The per-stage table as numbers: stem, each stage, head, with their counts."""
    parts = {part.name: part for part in c.parts}

    def counts(name: str) -> dict[str, int]:
        part = parts[name]
        return {"flops": part.flops, "params": part.params, "acts": part.acts}

    rows: list[dict[str, Any]] = [
        {"part": "stem", "width": p.stem_width, "stride": p.stem_stride, "out_size": p.stem_size}
        | counts("stem")
    ]
    for s in p.stages:
        rows.append(
            {
                "part": f"stage{s.index + 1}",
                "width": s.width,
                "depth": s.depth,
                "group_width": s.group_width,
                "groups": s.groups,
                "bottleneck_width": s.bottleneck_width,
                "bottleneck_width_first": s.bottleneck_width_first,
                "se_width_first": s.se_width_first,
                "se_width": s.se_width,
                "stride": s.stride,
                "out_size": s.out_size,
            }
            | counts(f"stage{s.index + 1}")
        )
    rows.append({"part": "head", "width": p.num_classes, "out_size": 1} | counts("head"))
    return rows


def _stage_rows(p: Plan, c: Complexity) -> tuple[list[str], list[list[str]]]:
    """The per-stage table as text, made from `_stage_records` (one source for both)."""
    headers = ["stage", "width", "depth", "group w", "groups", "bottleneck", "SE w", "stride"]
    headers += ["out", "flops %", "params %"]
    rows = []
    for r in _stage_records(p, c):
        if r["part"] == "stem":
            r = r | {"depth": 1}  # the text table shows the stem as one layer
        if "se_width" in r:
            r = r | {"se": f"{r['se_width_first']}/{r['se_width']}" if r["se_width"] else "-"}
            if r["bottleneck_width_first"] != r["bottleneck_width"]:  # bottleneck_in
                wb = f"{r['bottleneck_width_first']}/{r['bottleneck_width']}"
                r = r | {"bottleneck_width": wb}
        keys = ("width", "depth", "group_width", "groups", "bottleneck_width", "se", "stride")
        rows.append(
            [
                r["part"].removeprefix("stage"),
                *(str(r[k]) if k in r else "" for k in keys),
                str(r["out_size"]),
                f"{100 * r['flops'] / c.flops:.1f}",
                f"{100 * r['params'] / c.params:.1f}",
            ]
        )
    return headers, rows


def _design_line(spec: Spec) -> str:
    from ..core.spec import switches_at_default

    fields = spec.model_dump(exclude={"name", "stages", *switches_at_default(spec)})
    # The design parameters first, in the paper's order; stem/head/input fields after.
    first = ["block", "depth", "w0", "wa", "wm", "group_width", "bottleneck_multiplier"]
    first += ["se_ratio", "q", "rounding"]
    keys = [k for k in first if k in fields] + [k for k in fields if k not in first]
    return ", ".join(f"{k}={fields[k]}" for k in keys)


def _build_text(summary: SpecSummary, output_shape: list[int], verification: Any) -> str:
    from .render import human_count, render_table

    p, c = summary.plan, summary.counts
    headers, rows = _stage_rows(p, c)
    lines = [
        clean(f"{p.name}  ({summary.source})"),
        f"design: {_design_line(summary.spec)}",
        f"input: 1x{p.num_channels}x{p.input_size}x{p.input_size}  ->  last hidden state "
        f"{output_shape}",
        "",
        render_table(headers, rows, markdown=False).rstrip(),
        "(SE w, bottleneck: first block / other blocks; the first block's from its input)",
        "",
        f"total: {human_count(c.flops, 'F')}, {human_count(c.params, ' params')}, "
        f"{human_count(c.acts, ' acts')} (paper convention: 1 flop = 1 multiply-add)",
        f"exact: {c.flops:,} flops, {c.params:,} params, {c.acts:,} acts",
    ]
    if verification is not None:
        m, a = verification.measured, verification.analytic_fvcore
        status = (
            "OK, exact" if verification.ok else "MISMATCH: " + "; ".join(verification.mismatches())
        )
        lines += [
            "",
            "fvcore cross-check (fvcore convention: no bias adds, BN 2/element, pool 1/element):",
            f"  flops   analytic {a.flops:>16,}   fvcore {m.flops:>16,}",
            f"  acts    analytic {a.acts:>16,}   fvcore {m.acts:>16,}",
            f"  params  analytic {a.params:>16,}   fvcore {m.params:>16,}",
            f"  params  module's own count {m.module_params:,}",
            f"  {status}",
        ]
    return "\n".join(lines) + "\n"


def _save_targets(save: str, force: bool, spec: Spec) -> tuple[OutputSet, Path, Path, str]:
    """Check both --save outputs and validate the resolved spec before any work: a file name
    with a known suffix, its package installed, nothing half-done."""
    from ..core.generator import resolved_spec_text
    from ..infra.outputs import OutputSet

    weights = Path(save)
    if save.endswith(("/", os.sep)) or weights.is_dir():
        raise BuildError(
            f"{save}: --save names a weights file (.pt, .pth or .safetensors), not a folder"
        )
    if weights.suffix not in WEIGHT_SUFFIXES:
        got = f"not {weights.suffix}" if weights.suffix else "it has no suffix"
        raise BuildError(f"{weights}: --save writes .pt, .pth or .safetensors; {got}")
    if weights.suffix == ".safetensors":
        try:
            import safetensors.torch  # noqa: F401
        except ImportError:
            raise BuildError(
                f"{weights}: saving .safetensors needs the safetensors package: "
                "pip install 'regnet-space[safetensors]'"
            ) from None
    # Not FILE.yaml: beside a spec's own folder that name could be the source spec itself.
    spec_path = weights.with_suffix(".resolved.yaml")
    text = resolved_spec_text(spec)
    outputs = OutputSet(force)
    return outputs, outputs.file(weights), outputs.file(spec_path), text


def _save(model: Any, outputs: OutputSet, weights: Path, spec_path: Path, text: str) -> None:
    """Weights and resolved spec, committed together (the weights last)."""
    from ..infra.outputs import call_writer
    from ..nn.weights import save_torch

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights.suffix == ".safetensors":
        from safetensors.torch import save_file  # checked by _save_targets

        write = lambda tmp: save_file(state, tmp)  # noqa: E731
    else:
        write = lambda tmp: save_torch(state, tmp)  # noqa: E731
    with outputs.staging() as staging:
        staging.write_text(spec_path, text)
        call_writer(write, staging.path(weights), weights)


def _check_memory(summary: SpecSummary, allow_large: bool) -> None:
    """Refuse a forward pass estimated above the free memory (an allocator crash otherwise)."""
    from ..core.resources import forward_bytes
    from ..infra.memory import available_memory, human_bytes

    p = summary.plan
    need = forward_bytes(p, summary.counts.params)  # the counts build already has
    free = available_memory()
    if free is not None and need > free and not allow_large:
        raise BuildError(
            f"{p.name} at input size {p.input_size} needs about {human_bytes(need)} for one "
            f"forward pass, more than the {human_bytes(free)} free (--allow-large to try anyway)"
        )


@dataclass(frozen=True)
class _Built:
    """What building and checking the model found."""

    output_shape: list[int]
    verification: Any  # nn.counters.Verification, with --verify
    torch_checked: Any  # nn.counters.TorchCheck, with --counter torch


def _build_and_check(args: argparse.Namespace, summary: SpecSummary, saving: Any) -> _Built:
    """Build the model, run one image through it, cross-check and save as asked."""
    progress = Progress("build")
    progress.step("building the model")
    import torch  # torch is imported here, and only here

    from ..nn.model import build_model

    try:
        model = build_model(summary.plan, True, force=args.allow_large)
        model.eval()
        size = summary.plan.input_size
        progress.step("running one image")
        with torch.no_grad():
            x = torch.zeros(1, summary.spec.num_channels, size, size)
            out = model.regnet(x, return_dict=True).last_hidden_state
        verification = None
        if args.verify:
            from ..nn.counters import verify

            progress.step("cross-checking the counts with fvcore")
            verification = verify(model, summary.plan)
        torch_checked = None
        if args.counter == "torch":
            from ..nn.counters import torch_check

            progress.step("counting with FlopCounterMode")
            torch_checked = torch_check(summary.plan)
        if saving is not None:
            progress.step("saving")
            _save(model, *saving)
    finally:
        progress.done()
    return _Built(list(out.shape), verification, torch_checked)


def _build_json(summary: SpecSummary, built: _Built, targets: Any) -> dict[str, Any]:
    """The --json output of build."""
    data = summary.as_dict() | {"output_shape": built.output_shape}
    data["design"] = summary.spec.model_dump(mode="json", exclude_none=True)
    data["stages"] = _stage_records(summary.plan, summary.counts)
    verification = built.verification
    if verification is not None:
        m = verification.measured
        data["verify"] = {
            "ok": verification.ok,
            "fvcore": {"flops": m.flops, "acts": m.acts, "params": m.params},
            "analytic_fvcore": {
                "flops": verification.analytic_fvcore.flops,
                "acts": verification.analytic_fvcore.acts,
                "params": verification.analytic_fvcore.params,
            },
            "module_params": m.module_params,
        }
    if targets is not None:
        data["saved"] = [str(t) for t in targets]
    if built.torch_checked is not None:
        data["torch_counter"] = built.torch_checked.as_dict()
    return data


def cmd_build(args: argparse.Namespace) -> int:
    """Build the model of one spec and describe it."""
    from ..core.reader import read_spec
    from .render import summarize

    loaded = read_spec(args.spec)
    spec = loaded.spec
    summary = summarize(spec, loaded.source, args.input_size, "paper")
    saving = _save_targets(args.save, args.force, spec) if args.save else None
    targets = saving[1:3] if saving is not None else None
    _check_memory(summary, args.allow_large)
    built = _build_and_check(args, summary, saving)
    if args.json:
        sys.stdout.write(json.dumps(_build_json(summary, built, targets), indent=2) + "\n")
    else:
        sys.stdout.write(_build_text(summary, built.output_shape, built.verification))
        if built.torch_checked is not None:
            sys.stdout.write(built.torch_checked.summary_line() + "\n")
        if targets is not None:
            sys.stdout.write(
                clean(f"saved weights to {targets[0]} and the resolved spec to {targets[1]}") + "\n"
            )
    failed = (built.verification is not None and not built.verification.ok) or (
        built.torch_checked is not None and not built.torch_checked.ok
    )
    return 1 if failed else 0


def register(sub: Any) -> None:
    """Add `build` to the command's subparsers."""
    b = sub.add_parser(
        "build",
        help=COMMANDS["build"],
        description="Build the model of SPEC, run one image through it and print the design, "
        "a per-stage table, the totals (paper convention) and the output shape.",
    )
    b.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    b.add_argument("--input-size", type=input_size, metavar="N", help=INPUT_SIZE_HELP)
    b.add_argument("--json", action="store_true", help=JSON_HELP)
    b.add_argument(
        "--verify",
        action="store_true",
        help="cross-check the counts with fvcore on the built model (exit 1 on a mismatch)",
    )
    b.add_argument("--counter", choices=COUNTERS, default="analytic", help=COUNTER_HELP)
    b.add_argument(
        "--save",
        metavar="FILE",
        help="write the weights (.pt/.pth: torch.save of the state dict, loadable with "
        "weights_only=True; or .safetensors) and the resolved spec beside them "
        "(FILE with .resolved.yaml)",
    )
    b.add_argument("--force", action="store_true", help="overwrite the --save outputs")
    b.add_argument("--allow-large", action="store_true", help=ALLOW_LARGE_HELP)
    b.set_defaults(func=cmd_build)
