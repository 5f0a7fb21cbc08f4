"""The `adsrel` command line: parsing and wiring only.

Each verb lives in its own module under ``pipelines.commands`` and exposes
``add_parser(subparsers)`` (which sets ``func`` on its parser) and nothing else that the CLI needs.
User mistakes raise :class:`features.errors.UserError`; they are reported as one line on stderr
with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from features.errors import UserError

# Verb modules, in the order `adsrel --help` lists them. A new verb is one module plus one line here.
VERB_MODULES = (
    "pipelines.commands.synth",
    "pipelines.commands.prepare",
    "pipelines.commands.train",
    "pipelines.commands.evaluate",
    "pipelines.commands.promote",
    "pipelines.commands.score",
    "pipelines.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adsrel",
        description="Ads relevance pipeline: synth, prepare, train, evaluate, promote, score.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in VERB_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"adsrel {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"adsrel {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
