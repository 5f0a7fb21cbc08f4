"""Side-by-side timing: variants run interleaved in one process, so machine noise hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(variants: dict[str, Callable[[], object]], *, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant, calling them round-robin (A B C A B C ...)."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
