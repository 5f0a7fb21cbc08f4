"""Progress of long work on stderr: a tqdm bar with rate and ETA on a terminal, plain lines otherwise
(CI, Airflow task logs, files), so that a log shows how far a run got and how fast it went."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

_stream: TextIO | None = None  # None: sys.stderr as it is at each write


def stream() -> TextIO:
    return _stream or sys.stderr


def set_stream(target: TextIO | None) -> None:
    """Where progress goes from now on (the demo keeps it on the terminal and sends the rest to a log)."""
    global _stream
    _stream = target


@contextlib.contextmanager
def others_to_log(log_path: Path, fds: tuple[int, ...] = (2,)) -> Iterator[dict[int, TextIO]]:
    """What everything else writes to the file descriptors ``fds`` (the JVM and log4j, warnings,
    library logging and their progress bars) goes to ``log_path``, while adsrel's own progress lines
    stay on the terminal's stderr; yields the terminal's stream of each of ``fds``."""
    for handle in (sys.stdout, sys.stderr):
        handle.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    terminal = {fd: os.fdopen(os.dup(saved[fd]), "w", buffering=1) for fd in fds}
    captured = _stream is None and not _is_fd(sys.stderr, 2)  # e.g. pytest's capture: keep writing there
    with open(log_path, "a", buffering=1) as log_file:
        for fd in fds:
            os.dup2(log_file.fileno(), fd)
        previous = _stream
        if not captured:
            set_stream(terminal.get(2))
        try:
            yield terminal
        finally:
            set_stream(previous)
            for handle in (sys.stdout, sys.stderr):
                handle.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for handle in terminal.values():
                handle.close()


def _is_fd(handle: TextIO, fd: int) -> bool:
    try:
        return handle.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


def log(verb: str, message: str) -> None:
    """One progress line of ``adsrel <verb>`` on stderr."""
    print(f"adsrel {verb}: {message}", file=stream(), flush=True)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts ``unit`` up to ``total``. On a terminal: a tqdm bar. Otherwise a line each time the count
    passes a multiple of ``every``, and at the end, with the rate and the ETA."""

    def __init__(self, verb: str, total: int, *, initial: int = 0, every: int = 1, unit: str = "step",
                 enabled: bool = True, since: float | None = None) -> None:
        """``since``: the ``time.perf_counter()`` the rate is counted from (default: now)."""
        self.verb, self.total, self.unit, self.enabled = verb, total, unit, enabled
        self.every = max(1, every)
        self.count = self.started_at = initial
        self.clock = time.perf_counter() if since is None else since
        self.bar = None
        if enabled and stream().isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, file=stream(),
                            unit_scale=unit != "step", desc=f"adsrel {verb}")

    def update(self, n: int = 1, stats: Mapping[str, float] | None = None) -> None:
        if not self.enabled:
            return
        before, self.count = self.count, self.count + n
        if self.bar is not None:
            self.bar.update(n)
            if stats:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
            return
        if self.count // self.every > before // self.every or self.count >= self.total:
            elapsed = time.perf_counter() - self.clock
            rate = (self.count - self.started_at) / elapsed if elapsed > 0 else 0.0
            text = "".join(f" {k} {v:.4g}" for k, v in (stats or {}).items())
            eta = f", ETA {duration((self.total - self.count) / rate)}" if rate > 0 and self.count < self.total else ""
            log(self.verb, f"{self.unit} {self.count}/{self.total}{text} ({rate:.3g} {self.unit}/s{eta})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
