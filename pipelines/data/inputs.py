"""The one reader of input files, for raw logs (prepare) and candidates (score): finding them and
their format before any engine starts, and reading them, so that a missing or unreadable input or a
missing column is a one-line user error, not a Spark or Arrow traceback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
    return input_files(path)[0]


def check_input(path: str) -> str:
    """The format of an input, after checking that every Parquet file has a readable footer and
    every CSV file a text header: a corrupt file is named in one line before any engine starts.
    (Bad rows inside a readable file are the engines' business: quarantined or rejected.)"""
    fmt, files = input_files(path)
    for file in files:
        try:
            if fmt == "parquet":
                pq.read_metadata(file)
            elif fmt == "csv":
                with open(file, "rb") as handle:
                    handle.readline(1 << 20).decode("utf-8")  # the header line only
        except UnicodeDecodeError:
            raise UserError(f"{file}: not a CSV file (its header is not UTF-8 text)") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow's ArrowInvalid, OSError: all mean unreadable
            raise unreadable(file, fmt, exc) from None
    return fmt


def unreadable(file: Path, fmt: str, exc: BaseException) -> UserError:
    return UserError(f"{file}: not a readable {fmt} file ({first_line(exc)})")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_FAILED_READ = re.compile(r"\[(FAILED_READ_FILE[.\w]*)\] Encountered error while reading file (\S+?)\.?(?:\s|$)")
_ROOT_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.+)$", re.MULTILINE)


def unreadable_file_error(exc: BaseException) -> UserError | None:
    """A one-line user error for Spark's failure to read an input file mid-job (a file whose footer
    is fine and whose pages are not), else None. Spark says so in its error text, whether pyspark
    converted the Java exception or left it a Py4JJavaError."""
    text = str(exc)
    found = _FAILED_READ.search(text)
    if not found or found.group(1) == "FAILED_READ_FILE.FILE_NOT_EXIST":  # gone mid-job: worth a retry
        return None
    causes = _ROOT_CAUSE.findall(text)
    why = f" ({causes[-1].strip()[:200]})" if causes else ""
    return UserError(f"{found.group(2).removeprefix('file://')}: not a readable file, {found.group(1)}{why}")


def input_files(path: str) -> tuple[str, list[Path]]:
    """The format of an input and its data files of that format (the directory is listed once)."""
    files = data_files(path)
    found = {FORMATS[f.suffix.lower()] for f in files if f.suffix.lower() in FORMATS}
    if not found:
        raise UserError(f"no Parquet, JSON Lines or CSV files in {path}")
    if len(found) > 1:
        raise UserError(f"mixed formats in {path}: {', '.join(sorted(found))}")
    fmt = found.pop()
    return fmt, [f for f in files if FORMATS.get(f.suffix.lower()) == fmt]


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
        raise UserError(f"cannot read {path}: {first_line(exc)}") from None
    require_columns(df.columns, required, path)
    return df


# ---------------------------------------------------------------- reading without Spark (pyarrow)


def _json_value(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _json_batches(path: Path, columns: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
    """JSON Lines as string columns; a line that is not a JSON object keeps its text in _corrupt_record."""
    strings = pa.schema([(c, pa.string()) for c in (*columns, CORRUPT)])
    rows: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError
                rows.append({c: _json_value(record.get(c)) for c in columns})
            except ValueError:
                rows.append({CORRUPT: line.rstrip("\n")})
            if len(rows) == batch_rows:
                yield pa.Table.from_pylist(rows, schema=strings)
                rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=strings)


def _file_batches(fmt: str, file: Path, columns: Sequence[str], required: Sequence[str],
                  batch_rows: int) -> Iterator[pa.Table]:
    if fmt == "parquet":
        parquet = pq.ParquetFile(file)
        present = [c for c in parquet.schema_arrow.names if c in columns]
        require_columns(present, required, file)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            yield pa.Table.from_batches([batch])
    elif fmt == "csv":
        header = pacsv.open_csv(file, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
        require_columns(header, required, file)
        present = [c for c in header if c in columns]
        reader = pacsv.open_csv(file, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in present}, include_columns=present, strings_can_be_null=True))
        for batch in reader:
            yield pa.Table.from_batches([batch])
    else:
        yield from _json_batches(file, columns, batch_rows)


def read_arrow_batches(paths: Sequence[str], columns: Sequence[str], required: Sequence[str],
                       batch_rows: int) -> Iterator[pa.Table]:
    """Every input row without Spark, in batches of about ``batch_rows``, with those of ``columns``
    it has (JSON Lines: all of them as strings, plus _corrupt_record). A file that cannot be read is
    a one-line user error naming it."""
    for path in paths:
        fmt, files = input_files(path)
        for file in files:
            try:
                yield from _file_batches(fmt, file, columns, required, batch_rows)
            except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
                raise unreadable(file, fmt, exc) from None


def count_parquet_rows(paths: Sequence[str]) -> int | None:
    """The input rows from Parquet footers alone, or None when an input is text (counting its lines
    would read it all)."""
    found = [input_files(path) for path in paths]
    if any(fmt != "parquet" for fmt, _ in found):
        return None
    return sum(pq.read_metadata(f).num_rows for _, files in found for f in files)


def count_input_rows(paths: Sequence[str]) -> int:
    """The input rows, for a progress bar: Parquet metadata, or lines of text."""
    total = 0
    for path in paths:
        fmt, files = input_files(path)
        for file in files:
            if fmt == "parquet":
                total += pq.ParquetFile(file).metadata.num_rows
            else:
                with open(file, "rb") as handle:
                    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
                total += max(0, lines - (1 if fmt == "csv" else 0))
    return total
