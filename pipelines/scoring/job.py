"""`adsrel score`: candidate pairs -> scored Parquet with one model, on Spark or locally.

The model is pinned once before any row is read (:mod:`pipelines.scoring.model`); both engines
(:mod:`~pipelines.scoring.engine_spark`, :mod:`~pipelines.scoring.engine_local`) check candidates with
the same function (features/candidates.py) and score them with the same scorer (models/scoring.py);
the output is written aside and published at the end (:mod:`pipelines.scoring.output`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import UserError
from features.progress import log
from pipelines.data.inputs import check_input
from pipelines.scoring.engine_local import score_locally
from pipelines.scoring.model import ResolvedModel, resolve_model
from pipelines.scoring.output import SUMMARY, score_output
from pipelines.scoring.shadow import shadow_summary

ENGINES = ("spark", "local")


def run_score(model: str, candidates: list[str], output: str, *, engine: str = "spark", master: str | None = None,
              batch_rows: int = 4096, spark=None, shadow: str | None = None) -> dict[str, Any]:
    """The whole stage; returns the summary it wrote. ``spark``: a session to run in (left running),
    instead of one of its own. ``shadow``: a second model scoring every row beside the first one (its
    score never changes ``score``; its failure fails the run)."""
    started = time.perf_counter()
    if engine not in ENGINES:
        raise UserError(f"--engine must be spark or local, not {engine!r}")
    if engine == "local" and master:
        raise UserError("--master is for the Spark engine (--engine spark)")
    for path in candidates:  # fail fast, before any engine starts
        check_input(path)
    resolved = resolve_model(model)
    shadowed = resolve_model(shadow) if shadow else None
    log("score", f"model {_named(resolved)}{f'; shadow {_named(shadowed)}' if shadowed else ''}; engine {engine}")
    scored_at = datetime.now(UTC).replace(microsecond=0)
    with score_output(output) as out:
        if engine == "spark":
            from pipelines.scoring.engine_spark import score_with_spark  # pyspark only when asked for

            counts = score_with_spark(resolved, candidates, out, master=master, scored_at=scored_at, spark=spark,
                                      shadow=shadowed)
        else:
            counts = score_locally(resolved, candidates, out, scored_at=scored_at, batch_rows=batch_rows,
                                   started=started, shadow=shadowed)
        rejected = sum(counts.rejected.values())
        if counts.scored + rejected != counts.input_rows:
            raise RuntimeError(f"count mismatch: {counts.input_rows} input rows != {counts.scored} scored + "
                               f"{rejected} rejected")
        seconds = time.perf_counter() - started
        summary = {
            "input_rows": counts.input_rows, "scored": counts.scored, "rejected": counts.rejected,
            "rejected_rows": rejected,
            "model": resolved.identity(),
            "engine": engine, "master": master, "candidates": [str(p) for p in candidates],
            "output": str(Path(output).resolve()), "scored_at": scored_at.isoformat(),
            "seconds": round(seconds, 2),  # pairs/s: input pairs over the whole run, as the progress line counts
            "pairs_per_second": round(counts.input_rows / seconds, 2) if seconds else None,
            "peak_memory_mib": {k: round(v, 1) for k, v in counts.peak_memory_mib.items()},
            "model_loads": counts.model_loads,
        }
        if shadowed:
            summary["shadow"] = {**shadowed.identity(), **shadow_summary(out.path("scores"))}
            _log_shadow(summary["shadow"])
        out.publish(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.rejected.items())) or "none"
    log("score", f"{counts.input_rows} input rows: {counts.scored} scored, {rejected} rejected ({reasons}) in "
        f"{seconds:.1f} s; summary in {Path(output) / SUMMARY}")
    return summary


def _named(resolved: ResolvedModel) -> str:
    return f"{resolved.resolved if resolved.version else resolved.uri} ({resolved.digest[:19]})"


def _log_shadow(shadow: dict[str, Any]) -> None:
    """The shadow comparison, one line per segment, on stderr."""
    for task, row in shadow["tasks"].items():
        diff, rho = row["mean_abs_diff"], row["rank_correlation"]
        log("score", f"shadow {shadow['version'] or shadow['uri']} on {task}: {row['shadow_scored']}/{row['rows']} "
            f"rows, mean |score - shadow| {'-' if diff is None else f'{diff:.4f}'}, rank correlation "
            f"{'-' if rho is None else f'{rho:.3f}'}")
