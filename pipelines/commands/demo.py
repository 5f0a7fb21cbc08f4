"""`adsrel demo`: runs the pipeline end to end on embedded defaults, as far as it reaches today."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="run the pipeline end to end on built-in defaults",
        description="synth -> prepare -> train -> evaluate -> promote on a small synthetic log, under WORKDIR.",
    )
    p.add_argument("--workdir", default="demo-out", help="where the demo writes (default demo-out)")
    p.add_argument("--rows", type=int, default=20_000, help="synthetic raw log rows (default 20000)")
    p.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(args.workdir, args.rows, args.steps)
