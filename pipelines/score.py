"""`adsrel score`: candidate pairs -> scored Parquet with one model, on Spark or locally.

The model URI is resolved once, before any row is read (an alias to the version it names now), so a
champion that moves mid-run never mixes two models in one output; every row and the summary carry
the model's name, version and digest. Both engines (pipelines/score_spark.py, pipelines/score_local.py)
check candidates with the same function (features/candidates.py) and score them with the same
scorer (models/scoring.py). Output is written aside and moved into place; summary.json comes last,
so a failed or killed run leaves none, and a re-run replaces the output cleanly.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluation.registry import parse_models_uri, registered_version, resolve_model_dir
from features.errors import UserError
from features.progress import log
from features.task_map import TaskMap, parse_task_map
from models.artifact import ArtifactError, model_digest, read_metadata
from pipelines.inputs import detect_format

SUMMARY = "summary.json"
OUTPUT_DIRS = ("scores", "rejected")
LOGGED_MODEL_URI = re.compile(r"^models:/m-[0-9a-f]+/?$")  # a logged (not registered) model


@dataclass(frozen=True)
class ResolvedModel:
    """The one model a run scores with: where the user pointed, what that resolved to, its identity."""

    uri: str
    resolved: str
    name: str | None
    version: str | None
    digest: str
    model_dir: Path

    def task_map(self) -> TaskMap:
        meta = read_metadata(self.model_dir)
        tasks = sorted(meta.get("tasks") or [], key=lambda t: t["id"])
        return parse_task_map({"tasks": tasks, "unmapped": meta.get("unmapped") or "quarantine"})


def resolve_model(uri_or_dir: str) -> ResolvedModel:
    """``models:/name@alias`` and ``models:/name/N`` are pinned to the version they name now; a
    directory or runs:/ URI is used as it is."""
    parts = parse_models_uri(uri_or_dir)
    if uri_or_dir.startswith("models:/") and parts is None and not LOGGED_MODEL_URI.match(uri_or_dir):
        raise UserError(f"model URI {uri_or_dir} names no version or alias (e.g. {uri_or_dir.rstrip('/')}@champion "
                        "or .../3)")
    version = registered_version(uri_or_dir) if parts else None
    resolved = f"models:/{parts.name}/{version}" if parts else uri_or_dir
    model_dir = resolve_model_dir(resolved)
    try:
        digest = model_digest(model_dir)
        read_metadata(model_dir)
    except (ArtifactError, OSError) as exc:
        raise UserError(f"{uri_or_dir} is not a usable adsrel model: {exc}") from None
    return ResolvedModel(uri_or_dir, resolved, parts.name if parts else None, version, digest, model_dir)


class ScoreOutput:
    """``<out>/scores/``, ``<out>/rejected/`` and ``<out>/summary.json``, written aside in a staging
    directory under ``<out>`` and moved into place by :meth:`publish`; the summary last."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--output is not a directory: {out}")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / SUMMARY).unlink(missing_ok=True)  # from here until publish, the output is incomplete
        self.staging = self.out / f".staging-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()

    def __enter__(self) -> ScoreOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.staging / name

    def publish(self, summary: dict[str, Any]) -> None:
        trash = self.out / f".replaced-{uuid.uuid4().hex[:12]}"
        trash.mkdir()
        for name in OUTPUT_DIRS:
            staged, final = self.staging / name, self.out / name
            staged.mkdir(exist_ok=True)
            if final.exists():
                final.rename(trash / name)
            staged.rename(final)
        tmp = self.out / f".{SUMMARY}.tmp"
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.out / SUMMARY)
        shutil.rmtree(trash, ignore_errors=True)


@dataclass
class Counts:
    """What one engine did with the input rows."""

    input_rows: int
    scored: int
    rejected: dict[str, int] = field(default_factory=dict)
    peak_memory_mib: dict[str, float] = field(default_factory=dict)
    model_loads: int = 1  # how many times a process loaded the model (Spark: once per Python worker)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_score(model: str, candidates: list[str], output: str, *, engine: str = "spark", master: str | None = None,
              batch_rows: int = 4096, spark=None) -> dict[str, Any]:
    """The whole stage; returns the summary it wrote. ``spark``: a session to run in (left running),
    instead of one of its own."""
    started = time.perf_counter()
    if engine not in ("spark", "local"):
        raise UserError(f"--engine must be spark or local, not {engine!r}")
    if engine == "local" and master:
        raise UserError("--master is for the Spark engine (--engine spark)")
    for path in candidates:  # fail fast, before any engine starts
        detect_format(path)
    resolved = resolve_model(model)
    what = f"{resolved.resolved} ({resolved.digest[:19]})" if resolved.version else f"{model} ({resolved.digest[:19]})"
    log("score", f"model {what}; engine {engine}")
    scored_at = datetime.now(UTC).replace(microsecond=0)
    with ScoreOutput(output) as out:
        if engine == "spark":
            from pipelines.score_spark import score_with_spark

            counts = score_with_spark(resolved, candidates, out, master=master, scored_at=scored_at, spark=spark)
        else:
            from pipelines.score_local import score_locally

            counts = score_locally(resolved, candidates, out, scored_at=scored_at, batch_rows=batch_rows)
        rejected = sum(counts.rejected.values())
        if counts.scored + rejected != counts.input_rows:
            raise RuntimeError(f"count mismatch: {counts.input_rows} input rows != {counts.scored} scored + "
                               f"{rejected} rejected")
        seconds = time.perf_counter() - started
        summary = {
            "input_rows": counts.input_rows, "scored": counts.scored, "rejected": counts.rejected,
            "rejected_rows": rejected,
            "model": {"uri": resolved.uri, "resolved": resolved.resolved, "name": resolved.name,
                      "version": resolved.version, "digest": resolved.digest},
            "engine": engine, "master": master, "candidates": [str(p) for p in candidates],
            "output": str(Path(output).resolve()), "scored_at": scored_at.isoformat(),
            "seconds": round(seconds, 2), "pairs_per_second": round(counts.scored / seconds, 2) if seconds else None,
            "peak_memory_mib": {k: round(v, 1) for k, v in counts.peak_memory_mib.items()},
            "model_loads": counts.model_loads,
        }
        out.publish(summary)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.rejected.items())) or "none"
    log("score", f"{counts.input_rows} input rows: {counts.scored} scored, {rejected} rejected ({reasons}) in "
        f"{seconds:.1f} s; summary in {Path(output) / SUMMARY}")
    return summary


def model_columns(resolved: ResolvedModel, scored_at: datetime) -> dict[str, Any]:
    """The columns every scored row carries about the model, and when it was scored."""
    return {"model_name": resolved.name or resolved.uri, "model_version": resolved.version,
            "model_digest": resolved.digest, "scored_at": scored_at}
