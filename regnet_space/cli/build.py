"""`build`, `report` and `schema`: one spec (or folder of specs) in, a model and its numbers out."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import BuildError
from ..core.limits import CONVENTIONS, FORMATS
from ..infra.text import clean
from .args import (
    ALLOW_LARGE_HELP,
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

CONVENTION_HELP = (
    "counting convention: paper (pycls; 1 flop = 1 multiply-add, bias adds counted, BN/pool "
    "free), fvcore (fvcore's default FlopCountAnalysis in eval mode: no bias, BN 2/element, "
    "pooling 1/element) or torchvision (multiply-adds only)"
)

COUNTERS = ("analytic", "torch")
COUNTER_HELP = (
    "torch: also count with PyTorch's FlopCounterMode on the meta device (2 flops per "
    "multiply-add, no bias; no weights are allocated, so y10b works) and check it against "
    "2 x the torchvision convention (exit 1 on a mismatch)"
)

# build


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
            x = torch.zeros(1, spec.num_channels, size, size)
            out = model.regnet(x, return_dict=True).last_hidden_state
        output_shape = list(out.shape)
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
    if args.json:
        data = summary.as_dict() | {"output_shape": output_shape}
        data["design"] = spec.model_dump(mode="json", exclude_none=True)
        data["stages"] = _stage_records(summary.plan, summary.counts)
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
        if torch_checked is not None:
            data["torch_counter"] = torch_checked.as_dict()
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(_build_text(summary, output_shape, verification))
        if torch_checked is not None:
            sys.stdout.write(torch_checked.summary_line() + "\n")
        if targets is not None:
            sys.stdout.write(
                clean(f"saved weights to {targets[0]} and the resolved spec to {targets[1]}") + "\n"
            )
    failed = (verification is not None and not verification.ok) or (
        torch_checked is not None and not torch_checked.ok
    )
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# report and schema


def _summaries(args: argparse.Namespace) -> tuple[list[SpecSummary], list[str], list[str]]:
    """Every spec that loads, a line per skipped space file, a line per file that fails."""
    from ..core.hf import CONFIG_FILE
    from ..core.reader import read_spec
    from ..infra.errors import RegNetSpaceError
    from .render import find_spec_files, summarize

    if args.specs == ["-"]:
        loaded = read_spec("-")
        return [summarize(loaded.spec, loaded.source, args.input_size, args.convention)], [], []
    good, skipped, bad = [], [], []
    for item in args.specs:
        p = Path(item)
        if p.is_dir() and not (p / CONFIG_FILE).is_file():  # a folder of specs
            files = find_spec_files([p], recursive=args.recursive)
            skipped += [
                f"skipped {f}: a design-space file, not a spec (see `sample`)"
                for f in files.skipped
            ]
            bad += files.missing
            sources = [str(f) for f in files.specs]
        else:  # a file of any spec form, a Hugging Face snapshot folder or a shipped name
            sources = [item]
        for source in sources:
            try:
                loaded = read_spec(source)
                good.append(summarize(loaded.spec, loaded.source, args.input_size, args.convention))
            except RegNetSpaceError as exc:
                message = str(exc)
                bad.append(message if message.startswith(source) else f"{source}: {message}")
    return good, skipped, bad


def cmd_report(args: argparse.Namespace) -> int:
    """One row per spec, analytic counts (and FlopCounterMode's with --counter torch).

    Every spec that loads is reported first, then one line on stderr for each that does not;
    the exit status is 2 when any did not.
    """
    from .render import render_report

    fmt = "json" if args.json else args.format
    summaries, skipped, bad = _summaries(args)
    status = 2 if bad else 0
    checks = []
    if args.counter == "torch" and summaries:
        from ..nn.counters import torch_check

        progress = Progress("report --counter torch", len(summaries))
        try:
            for i, s in enumerate(summaries):
                checks.append(torch_check(s.plan))
                progress.update(i + 1)
        finally:
            progress.done()
    if summaries and fmt == "json" and checks:
        rows = [
            s.as_dict() | {"torch_counter": c.as_dict()}
            for s, c in zip(summaries, checks, strict=True)
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif summaries or fmt in ("json", "csv"):
        sys.stdout.write(render_report(summaries, fmt))
        if checks and fmt != "csv":
            agree = sum(c.ok for c in checks)
            sys.stdout.write(
                f"FlopCounterMode (meta device): {agree}/{len(checks)} agree with "
                "2 x the torchvision convention\n"
            )
            for s, c in zip(summaries, checks, strict=True):
                if not c.ok:
                    sys.stdout.write(clean(f"  {s.source}: {c.summary_line()}") + "\n")
    sys.stdout.flush()
    for line in skipped:
        sys.stderr.write(clean(line) + "\n")
    for message in bad:
        sys.stderr.write(f"regnet-space: {clean(message)}\n")
    if status == 0 and not all(c.ok for c in checks):
        status = 1
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the spec format."""
    from ..core.spec import spec_json_schema

    sys.stdout.write(json.dumps(spec_json_schema(), indent=2) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add build, report and schema to the command's subparsers."""

    b = sub.add_parser(
        "build",
        help="build the PyTorch model of a spec and describe it",
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

    r = sub.add_parser(
        "report",
        help="counts of specs or folders of specs, without building models",
        description="Flops, params and activations of each spec (folders: their *.yaml files), "
        "counted analytically. Every spec that loads is reported, then one line on stderr for "
        "each file that does not (exit status 2 if any); design-space files in a folder are "
        "named as skipped.",
    )
    r.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC_OR_DIR",
        help="spec files, folders of them, shipped spec names (y040), or - for stdin",
    )
    r.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )
    r.add_argument("--json", action="store_true", help="the same as --format json")
    r.add_argument(
        "-r", "--recursive", action="store_true", help="also read the folders inside folders"
    )
    r.add_argument("--input-size", type=input_size, metavar="N", help=INPUT_SIZE_HELP)
    r.add_argument("--convention", choices=CONVENTIONS, default="paper", help=CONVENTION_HELP)
    r.add_argument("--counter", choices=COUNTERS, default="analytic", help=COUNTER_HELP)
    r.set_defaults(func=cmd_report)

    s = sub.add_parser(
        "schema",
        help="print the JSON Schema of the spec format",
        description="Print the JSON Schema of the spec file format (both forms), for editors.",
    )
    s.set_defaults(func=cmd_schema)
