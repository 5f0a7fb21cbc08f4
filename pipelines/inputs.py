"""Finding the input files of a stage and their format, before any engine starts: a missing or
unreadable input is a one-line user error, not a Spark or Arrow traceback."""

from __future__ import annotations

from pathlib import Path

from features.errors import UserError

FORMATS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv"}


def data_files(path: str) -> list[Path]:
    """The data files of an input: the file itself, or the files under a directory that are not
    hidden or bookkeeping (``_SUCCESS``, ``.crc``)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"input not found: {path}")
    if p.is_file():
        return [p]
    return [f for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(("_", "."))]


def detect_format(path: str) -> str:
    """parquet, json or csv from the file name, or from the data files inside a directory."""
    found = {FORMATS[f.suffix.lower()] for f in data_files(path) if f.suffix.lower() in FORMATS}
    if not found:
        raise UserError(f"no Parquet, JSON Lines or CSV files in {path}")
    if len(found) > 1:
        raise UserError(f"mixed formats in {path}: {', '.join(sorted(found))}")
    return found.pop()
