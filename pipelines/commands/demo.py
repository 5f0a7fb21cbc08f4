"""`adsrel demo`: runs the pipeline end to end on embedded defaults, as far as it reaches today."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the pipeline end to end on built-in defaults")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.demo import run_demo

    return run_demo()
