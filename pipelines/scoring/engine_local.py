"""The local engine of `adsrel score` (``--engine local``): no JVM, streaming with pyarrow.

Candidates are read batch by batch (Parquet row groups, CSV blocks, JSON lines), checked and scored
in this process with every core torch is given, and written as they come: memory holds one batch,
whatever the input's size. Rows and layout are those of the Spark engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.candidates import (
    CANDIDATE_COLUMNS,
    REQUIRED_COLUMNS,
    SCORE_SCHEMA,
    check_candidates,
    rejected_rows,
    scored_rows,
    with_model_columns,
)
from features.progress import Progress
from features.schema import CORRUPT
from pipelines.data.inputs import input_files, require_columns
from pipelines.scoring.model import ResolvedModel
from pipelines.scoring.output import Counts, ScoreOutput, peak_rss_mib

ROWS_PER_FILE = 1_000_000


def _json_value(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _json_batches(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    """JSON Lines as string columns; a line that is not a JSON object keeps its text in _corrupt_record."""
    rows: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError
                rows.append({c: _json_value(record.get(c)) for c in CANDIDATE_COLUMNS})
            except ValueError:
                rows.append({CORRUPT: line.rstrip("\n")})
            if len(rows) == batch_rows:
                yield pa.Table.from_pylist(rows, schema=_STRINGS)
                rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=_STRINGS)


_STRINGS = pa.schema([(c, pa.string()) for c in (*CANDIDATE_COLUMNS, CORRUPT)])


def read_batches(paths: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """Every input row, in batches of about ``batch_rows``, with the columns it has."""
    for path in paths:
        fmt, files = input_files(path)
        for file in files:
            if fmt == "parquet":
                parquet = pq.ParquetFile(file)
                columns = [c for c in parquet.schema_arrow.names if c in CANDIDATE_COLUMNS]
                require_columns(columns, REQUIRED_COLUMNS, file)
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
            elif fmt == "csv":
                header = pacsv.open_csv(file, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
                require_columns(header, REQUIRED_COLUMNS, file)
                columns = [c for c in header if c in CANDIDATE_COLUMNS]
                reader = pacsv.open_csv(file, convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns}, include_columns=columns,
                    strings_can_be_null=True))
                for batch in reader:
                    yield pa.Table.from_batches([batch])
            else:
                yield from _json_batches(file, batch_rows)


def count_rows(paths: list[str]) -> int:
    """The input rows, for the progress bar: Parquet metadata, or lines of text."""
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


class _Writers:
    """Parquet files under scores/ (a new one every ROWS_PER_FILE rows) and rejected/reason=*/."""

    def __init__(self, scores: Path, rejected: Path) -> None:
        self.scores_dir, self.rejected_dir = scores, rejected
        scores.mkdir(parents=True)
        rejected.mkdir(parents=True)
        self.scores: pq.ParquetWriter | None = None
        self.in_file = self.files = 0
        self.rejected: dict[str, pq.ParquetWriter] = {}

    def write_scores(self, table: pa.Table) -> None:
        if self.scores is None or self.in_file >= ROWS_PER_FILE:
            self.close_scores()
            self.scores = pq.ParquetWriter(self.scores_dir / f"part-{self.files:05d}.parquet", SCORE_SCHEMA)
            self.files, self.in_file = self.files + 1, 0
        self.scores.write_table(table)
        self.in_file += table.num_rows

    def write_rejected(self, table: pa.Table) -> None:
        for reason in pc.unique(table["reason"]).to_pylist():
            rows = table.filter(pc.equal(table["reason"], reason)).drop_columns(["reason"])
            if reason not in self.rejected:
                directory = self.rejected_dir / f"reason={reason}"
                directory.mkdir()
                self.rejected[reason] = pq.ParquetWriter(directory / "part-00000.parquet", rows.schema)
            self.rejected[reason].write_table(rows)

    def close_scores(self) -> None:
        if self.scores is not None:
            self.scores.close()
            self.scores = None

    def close(self) -> None:
        self.close_scores()
        for writer in self.rejected.values():
            writer.close()


def score_locally(resolved: ResolvedModel, candidates: list[str], out: ScoreOutput, *, scored_at: datetime,
                  batch_rows: int = 4096) -> Counts:
    from models.scoring import Scorer

    scorer = Scorer.load(resolved.model_dir)
    constant = resolved.columns(scored_at)
    counts = Counts(input_rows=0, scored=0)
    writers = _Writers(out.path("scores"), out.path("rejected"))
    progress = Progress("score", count_rows(candidates), every=max(batch_rows, 1), unit="pairs")
    try:
        for table in read_batches(candidates, batch_rows):
            checked = check_candidates(table, scorer.task_map)
            rejected = rejected_rows(table, checked)
            if rejected.num_rows:
                writers.write_rejected(rejected)
                for reason, n in zip(*pc.value_counts(rejected["reason"]).flatten(), strict=True):
                    counts.rejected[reason.as_py()] = counts.rejected.get(reason.as_py(), 0) + n.as_py()
            accepted = checked.filter(pc.is_null(checked["reason"]))
            if accepted.num_rows:
                scores = scorer.predict(accepted.to_pandas())
                writers.write_scores(with_model_columns(scored_rows(accepted, scores), constant))
            counts.input_rows += table.num_rows
            counts.scored += accepted.num_rows
            progress.update(table.num_rows)
    finally:
        writers.close()
        progress.close()
    counts.peak_memory_mib = {"driver": peak_rss_mib()}
    return counts
