"""Reading the output of `adsrel prepare` outside Spark: the manifest and the task shards (pyarrow).

The manifest is the proof that a prepare run completed; a shards directory without one is refused.
Its digest identifies the data a model was trained or evaluated on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import UserError
from features.schema import SPLITS

MANIFEST = "manifest.json"
# What training and scoring read of a shard row.
TEXT_COLUMNS = ("query", "ad_title", "ad_description", "display_url")
MODEL_COLUMNS = ("example_id", "task_id", *TEXT_COLUMNS, "market", "vertical", "label", "weight")


def read_manifest(shards_dir: str | Path) -> dict[str, Any]:
    root = Path(shards_dir)
    if not root.is_dir():
        raise UserError(f"shards directory not found: {shards_dir}")
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"{shards_dir} has no {MANIFEST}: the prepare run did not complete (or this is not its output)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    for key in ("tasks", "counts"):
        if key not in manifest:
            raise UserError(f"{path} has no {key!r}: not a manifest of adsrel prepare")
    return manifest


# Manifest entries that say how a prepare run went, not what it produced: a re-run over the same input
# writes the same shards, and must keep their identity (a finished training resumes instead of being
# refused; evaluations are reused).
RUN_ONLY = ("seconds",)


def manifest_digest(shards_dir: str | Path) -> str:
    """sha256 of the manifest without its run-only entries (:data:`RUN_ONLY`, and the Spark master
    it ran on): the identity of the prepared data."""
    manifest = json.loads((Path(shards_dir) / MANIFEST).read_text())
    for key in RUN_ONLY:
        manifest.pop(key, None)
    if isinstance(manifest.get("spark"), dict):
        manifest["spark"].pop("master", None)
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def task_names(manifest: dict[str, Any]) -> list[str]:
    """Task names indexed by task id."""
    tasks = sorted(manifest["tasks"], key=lambda t: t["id"])
    if [t["id"] for t in tasks] != list(range(len(tasks))):
        raise UserError("manifest task ids are not 0..T-1")
    return [t["name"] for t in tasks]


def split_files(shards_dir: str | Path, split: str) -> dict[str, list[Path]]:
    """Parquet files of one split, by task name (tasks without files are absent)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    base = Path(shards_dir) / "shards" / f"split={split}"
    files: dict[str, list[Path]] = {}
    for task_dir in sorted(base.glob("task=*")):
        parquet = sorted(task_dir.glob("*.parquet"))
        if parquet:
            files[task_dir.name.split("=", 1)[1]] = parquet
    return files


def file_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def read_table(paths: Sequence[Path], columns: Sequence[str] | None = None) -> pa.Table:
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in paths]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def read_split(shards_dir: str | Path, split: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One split as a DataFrame with the ``task`` name restored from the partition directory."""
    read_manifest(shards_dir)
    frames = []
    for task, paths in split_files(shards_dir, split).items():
        frame = read_table(paths, columns).to_pandas()
        frame["task"] = task
        frames.append(frame)
    if not frames:
        raise UserError(f"{shards_dir} has no rows in split {split!r}")
    return pd.concat(frames, ignore_index=True)
