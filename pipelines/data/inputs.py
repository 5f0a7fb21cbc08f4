"""The one reader of input files, for raw logs (prepare) and candidates (score): finding them and
their format before any engine starts, and reading them, so that a missing or unreadable input or a
missing column is a one-line user error, not a Spark or Arrow traceback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import UserError
from features.schema import CORRUPT

if TYPE_CHECKING:  # pyspark only where Spark reads: the local scoring engine runs without it
    from pyspark.sql import DataFrame, SparkSession

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


def input_files(path: str) -> tuple[str, list[Path]]:
    """The format of an input and its data files of that format."""
    fmt = detect_format(path)
    return fmt, [f for f in data_files(path) if FORMATS.get(f.suffix.lower()) == fmt]


def require_columns(columns: Iterable[str], required: Iterable[str], where: str | Path) -> None:
    """A one-line user error naming the required columns an input lacks."""
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise UserError(f"{where} lacks required columns: {', '.join(missing)}")


def read_with_spark(spark: SparkSession, path: str, *, columns: Sequence[str], required: Sequence[str]) -> DataFrame:
    """One input as Spark reads its format, with its columns checked: JSON Lines with every name of
    ``columns`` as a string plus ``_corrupt_record`` (a line that does not parse is kept there),
    CSV with its header and no type inference, Parquet with its own types."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import types as T

    fmt = detect_format(path)
    try:
        if fmt == "json":
            schema = T.StructType([T.StructField(c, T.StringType()) for c in (*columns, CORRUPT)])
            df = spark.read.schema(schema).option("mode", "PERMISSIVE").json(path)
        elif fmt == "csv":
            df = spark.read.option("header", True).option("inferSchema", False).csv(path)
        else:
            df = spark.read.parquet(path)
    except AnalysisException as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    require_columns(df.columns, required, path)
    return df
