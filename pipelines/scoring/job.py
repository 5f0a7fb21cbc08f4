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
from pipelines.scoring.model import resolve_model
from pipelines.scoring.output import SUMMARY, score_output

ENGINES = ("spark", "local")


def run_score(model: str, candidates: list[str], output: str, *, engine: str = "spark", master: str | None = None,
              batch_rows: int = 4096, spark=None) -> dict[str, Any]:
    """The whole stage; returns the summary it wrote. ``spark``: a session to run in (left running),
    instead of one of its own."""
    started = time.perf_counter()
    if engine not in ENGINES:
        raise UserError(f"--engine must be spark or local, not {engine!r}")
    if engine == "local" and master:
        raise UserError("--master is for the Spark engine (--engine spark)")
    for path in candidates:  # fail fast, before any engine starts
        check_input(path)
    resolved = resolve_model(model)
    what = f"{resolved.resolved} ({resolved.digest[:19]})" if resolved.version else f"{model} ({resolved.digest[:19]})"
    log("score", f"model {what}; engine {engine}")
    scored_at = datetime.now(UTC).replace(microsecond=0)
    with score_output(output) as out:
        if engine == "spark":
            from pipelines.scoring.engine_spark import score_with_spark  # pyspark only when asked for

            counts = score_with_spark(resolved, candidates, out, master=master, scored_at=scored_at, spark=spark)
        else:
            counts = score_locally(resolved, candidates, out, scored_at=scored_at, batch_rows=batch_rows,
                                   started=started)
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
            "seconds": round(seconds, 2),  # pairs/s: input pairs over the whole run, as the progress line counts
            "pairs_per_second": round(counts.input_rows / seconds, 2) if seconds else None,
            "peak_memory_mib": {k: round(v, 1) for k, v in counts.peak_memory_mib.items()},
            "model_loads": counts.model_loads,
        }
        out.publish(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.rejected.items())) or "none"
    log("score", f"{counts.input_rows} input rows: {counts.scored} scored, {rejected} rejected ({reasons}) in "
        f"{seconds:.1f} s; summary in {Path(output) / SUMMARY}")
    return summary
