"""`adsrel demo`: the whole product on built-in synthetic data, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from pipelines.demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline end to end on built-in synthetic data",
        description="synth -> prepare -> train MTL-LoRA and a LoRA baseline at matched budgets -> evaluate both -> "
        "the promotion gate -> batch-score candidates with the champion -> a per-task table, under WORKDIR. "
        "Run again, it reuses what has not changed. Spark, transformers and MLflow output goes to WORKDIR/demo.log. "
        "Exit 0 done, 2 bad arguments.",
    )
    p.add_argument("--workdir", type=Path, default=d.workdir, help=f"where the demo writes (default {d.workdir})")
    p.add_argument("--rows", type=int, default=d.rows, help=f"synthetic raw log rows (default {d.rows})")
    p.add_argument("--candidates", type=int, default=d.candidates,
                   help=f"candidate pairs to score (default {d.candidates})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps of each model (default {d.steps})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.errors import UserError
    from pipelines.demo import DemoConfig, run_demo

    if min(args.rows, args.candidates, args.steps) < 1:
        raise UserError("--rows, --candidates and --steps must be positive")
    return run_demo(DemoConfig(workdir=args.workdir, rows=args.rows, candidates=args.candidates, steps=args.steps))
