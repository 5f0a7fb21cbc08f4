"""The output of a scoring run, and what each engine reports about the rows it handled.

``<out>/scores/``, ``<out>/rejected/`` and ``<out>/summary.json`` are written aside and swapped in
at the end, the summary last (features/staged_output.py): a run that fails leaves an earlier complete
output as it was, and a re-run replaces the output cleanly.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

from features.staged_output import StagedOutput

SUMMARY = "summary.json"
OUTPUT_DIRS = ("scores", "rejected")


def score_output(out: str) -> StagedOutput:
    """The staged output of one scoring run."""
    return StagedOutput(out, OUTPUT_DIRS, SUMMARY)


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
