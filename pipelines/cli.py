"""The `adsrel` command line: parsing and wiring only.

Each verb lives in its own module under ``pipelines.commands`` and exposes
``add_parser(subparsers)`` (which sets ``func`` on its parser) and nothing else that the CLI needs.
User mistakes raise :class:`features.errors.UserError`; they are reported as one line on stderr
with a non-zero exit, never as a traceback. What Spark, MLflow and the other libraries print goes to
a log file (``$ADSREL_LOG_DIR``, else ``~/.cache/adsrel/logs``), named on stderr when a verb fails
for a reason that is not the user's; ``--verbose`` (or ``ADSREL_VERBOSE=1``) keeps it on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from features.errors import UserError
from features.progress import others_to_log, stream

# Verb modules, in the order `adsrel --help` lists them. A new verb is one module plus one line here.
VERB_MODULES = (
    "pipelines.commands.synth",
    "pipelines.commands.prepare",
    "pipelines.commands.train",
    "pipelines.commands.evaluate",
    "pipelines.commands.promote",
    "pipelines.commands.score",
    "pipelines.commands.monitor",
    "pipelines.commands.demo",
)
# Verbs that keep their own log (the demo's is under its workdir).
OWN_LOG = frozenset({"demo"})


def adsrel_version() -> str:
    try:
        return version("adsrel")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adsrel",
        description="Ads relevance pipeline: synth, prepare, train, evaluate, promote, score.",
    )
    parser.add_argument("--version", action="version", version=f"adsrel {adsrel_version()}")
    subparsers = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in VERB_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    for name, verb in subparsers.choices.items():
        if name not in OWN_LOG:
            verb.add_argument("--verbose", action="store_true",
                              help="show Spark's, MLflow's and the libraries' own output on stderr "
                              "(default: in a log file, named when the verb fails)")
    return parser


def log_path(verb: str) -> Path | None:
    """A new log file for this run of ``verb``, or None when no log directory can be made."""
    directory = Path(os.environ.get("ADSREL_LOG_DIR") or Path.home() / ".cache" / "adsrel" / "logs")
    path = directory / f"{verb}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # no log then: the libraries' output stays on stderr
        return None
    return path


@contextlib.contextmanager
def library_output(args: argparse.Namespace) -> Iterator[Path | None]:
    """Sends the libraries' output to a log file unless --verbose; yields its path (None: stderr)."""
    quiet = not getattr(args, "verbose", True) and not os.environ.get("ADSREL_VERBOSE") and sys.stderr is not None
    path = log_path(args.verb) if quiet else None
    if path is None:
        yield None
        return
    with others_to_log(path):
        yield path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with library_output(args) as log_file:
        try:
            code, message = run(args)
        except BaseException:
            name_log(args.verb, log_file)
            raise
        if code not in (0, 2, 3):  # 2 (the user's mistake) and 3 (a verdict) say all in their line
            name_log(args.verb, log_file)
        if message:  # last: a scheduler shows a failed task's last stderr line
            print(f"adsrel {args.verb}: {message}", file=stream(), flush=True)
    return code


def name_log(verb: str, log_file: Path | None) -> None:
    if log_file is not None:
        print(f"adsrel {verb}: Spark, MLflow and library output: {log_file}", file=stream(), flush=True)


def run(args: argparse.Namespace) -> tuple[int, str | None]:
    """The verb's exit code, and the one line to say when it failed for a reason it knows."""
    try:
        return int(args.func(args) or 0), None
    except UserError as exc:
        return exc.exit_code, f"error: {exc}"
    except KeyboardInterrupt:
        return 130, "interrupted"
    except Exception as exc:
        from pipelines.data.inputs import unreadable_file_error

        error = unreadable_file_error(exc)  # an input file Spark could not read mid-job: the user's
        if error is None:
            raise
        return error.exit_code, f"error: {error}"


if __name__ == "__main__":
    sys.exit(main())
