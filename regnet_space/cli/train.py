"""`train`: one design, one recipe, one data set; a run folder that resumes where it stopped."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..study import DATA_NAMES
from .args import COMMANDS, PROG

TRAIN_EXAMPLES = """examples:
  regnet-space train specs/y002.yaml --recipe recipes/digits.yaml -o runs/y002
  regnet-space train design.yaml --recipe recipes/cifar10.yaml --data cifar10 \\
      --data-root ~/data -o runs/c10 --device cuda
  regnet-space train design.yaml --recipe recipes/digits.yaml -o runs/d --threads 1 --json

The run folder holds run.json (spec, recipe, data), spec.yaml (the resolved spec),
recipe.yaml, metrics.jsonl (one line per epoch), checkpoint.pt (the last epoch),
model.safetensors (the final weights, EMA weights when the recipe has an EMA) and
result.json (written last). Rerunning the same command resumes from the last epoch
checkpoint; a finished run prints its result again. The learning rate is
base_lr * batch_size / 128 (pycls). One run at a time trains into a folder (a second
gets exit status 2 naming the holder). A run that fails (a diverged loss) exits with
status 1; bad input (files, images, a damaged checkpoint) with 2."""


def register(subparsers: Any) -> None:
    """Add `train` to the CLI's subparsers."""
    t = subparsers.add_parser(
        "train",
        help=COMMANDS["train"],
        description="Train the model of SPEC under RECIPE on a data set and report its final "
        "top-1 test error; per-epoch metrics, checkpoints and the weights go to RUNDIR.",
        epilog=TRAIN_EXAMPLES,
    )
    t.add_argument("spec", metavar="SPEC", help="spec file (YAML), pycls YAML or config.json")
    t.add_argument("--recipe", required=True, metavar="RECIPE", help="recipe file (recipes/)")
    t.add_argument(
        "--data",
        default="digits",
        choices=DATA_NAMES,
        help="data set (default digits: scikit-learn's bundled 8x8 digits, no download)",
    )
    t.add_argument(
        "--data-root",
        metavar="PATH",
        help="folder of the data files: cifar10/cifar100 (the python or binary batch folder "
        "or its parent), imagefolder (train/ and val/ class folders)",
    )
    t.add_argument("-o", "--output", required=True, metavar="RUNDIR", help="run folder")
    t.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"
    )
    t.add_argument(
        "--threads", type=_positive, metavar="N", help="torch CPU threads (default: torch's)"
    )
    t.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    t.add_argument(
        "--force",
        action="store_true",
        help="start over in a RUNDIR holding another run (its run files are replaced)",
    )
    t.set_defaults(func=cmd_train)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """Validate everything, then train (or resume, or report a finished run)."""
    from ..core.reader import load_spec
    from ..infra.text import clean
    from ..study.data import DataSpec, check_data
    from ..study.recipe import load_recipe

    spec = load_spec(args.spec)
    recipe = load_recipe(Path(args.recipe))
    data = check_data(DataSpec(name=args.data, root=args.data_root))

    from ..study.trainer import (  # imports torch
        check_run_dir,
        resolve_device,
        run_identity,
        spec_for_data,
        train,
    )

    resolve_device(args.device)
    run_dir = Path(args.output)
    identity = run_identity(spec_for_data(spec, data), recipe, data)
    state = check_run_dir(run_dir, identity, args.force)
    try:
        result = train(
            spec,
            recipe,
            data,
            device=args.device,
            threads=args.threads,
            run_dir=run_dir,
            progress=sys.stderr.isatty(),
            force=args.force,
        )
    except FloatingPointError as exc:  # the run failed (not the input): exit status 1
        sys.stderr.write(f"{PROG}: {clean(str(exc))}; {run_dir} keeps its last epoch\n")
        return 1
    if args.json:
        out = result.as_dict() | {"run_dir": str(run_dir), "state": state}
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    note = {"new": "", "resume": " (resumed)", "done": " (already finished)"}[state]
    synthetic = " [synthetic data: a speed measurement, not an error]" if result.synthetic else ""
    sys.stdout.write(
        f"{spec.name}: top-1 error {result.error:.2f} % after {result.epochs} epochs on "
        f"{data.name}{note}; {result.images_per_second:,.0f} images/s, "
        f"{result.train_seconds:.1f} s on {result.device}{synthetic} -> {run_dir}/\n"
    )
    return 0
