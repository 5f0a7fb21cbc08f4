"""The output of a scoring run, and what each engine reports about the rows it handled.

``<out>/scores/``, ``<out>/rejected/`` and ``<out>/summary.json`` are written aside in a staging
directory under ``<out>`` and moved into place at the end, the summary last: a failed or killed run
leaves no summary.json, and a re-run replaces the output cleanly.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.errors import UserError

SUMMARY = "summary.json"
OUTPUT_DIRS = ("scores", "rejected")


class ScoreOutput:
    """The staging directory an engine writes into (:meth:`path`), published by :meth:`publish`."""

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
