"""An output directory that only a run that succeeds replaces.

A run writes its parts (``shards/``, ``scores/``, ...) into a staging directory under the output
and :meth:`StagedOutput.publish` swaps them in at the end, its completion marker (``manifest.json``,
``summary.json``) last, under a lock so that two runs never interleave their swaps. A run that fails
leaves an earlier complete output as it was: a failure during the swap puts the earlier parts back,
and a run killed during the swap leaves them aside, where the next run into the same output puts
them back. A killed run's staging directory is removed by the next run (its name carries the host
and process id, so a live run's staging is never touched; another host's only after a day).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from features.errors import UserError

STAGING, REPLACED, LOCK = ".staging-", ".replaced-", ".lock"
_HOST = socket.gethostname().replace("-", "_") or "host"
_OTHERS_AFTER_S = 24 * 3600  # another host's (or an older version's) leftovers: removed once a day old


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(entry: Path) -> bool:
    """``.staging-<host>-<pid>-<id>``: this host's dead pid, or anyone's once a day old."""
    parts = entry.name.split("-")
    if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit():
        return not _alive(int(parts[2]))
    return time.time() - entry.stat().st_mtime > _OTHERS_AFTER_S


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _restore(out: Path, trash: Path) -> None:
    """Puts the earlier parts kept in ``trash`` back in place of whatever a broken swap left."""
    for kept in trash.iterdir():
        final = out / kept.name
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        kept.rename(final)
    trash.rmdir()


def remove_stale(out: Path, marker: str | None = None) -> list[Path]:
    """Cleans what killed runs left under ``out``: staging directories are removed; the earlier parts
    of a swap killed half-way (the output has no ``marker``) are put back. Returns what it handled."""
    handled = []
    for entry in sorted(out.glob(".*")):
        if not entry.is_dir() or not entry.name.startswith((STAGING, REPLACED)) or not _owner_gone(entry):
            continue
        if entry.name.startswith(REPLACED) and marker and not (out / marker).exists() and (entry / marker).exists():
            _restore(out, entry)
        else:
            shutil.rmtree(entry, ignore_errors=True)
        handled.append(entry)
    return handled


class StagedOutput:
    """``with StagedOutput(out, ("shards", "quarantine"), "manifest.json") as staged:`` write under
    ``staged.path(part)``, then ``staged.publish(text_of_the_marker)``."""

    def __init__(self, out: str | Path, parts: tuple[str, ...], marker: str) -> None:
        self.out, self.parts, self.marker = Path(out), parts, marker
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--output is not a directory: {out}")
        tag = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.staging, self._trash = self.out / f"{STAGING}{tag}", self.out / f"{REPLACED}{tag}"
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with _locked(self.out):
                remove_stale(self.out, marker)
            self.staging.mkdir()
        except OSError as exc:
            raise UserError(f"cannot write to --output {out}: {exc.strerror or exc}") from None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, part: str) -> Path:
        return self.staging / part

    def publish(self, marker_text: str) -> None:
        """Swaps the staged parts in, then writes the marker (atomically). The earlier marker goes
        aside first, so a half-swapped output never reads as complete; any failure puts it all back."""
        with _locked(self.out):
            self._trash.mkdir()
            try:
                self._swap(marker_text)
            except BaseException:
                _restore(self.out, self._trash)
                raise
            shutil.rmtree(self._trash, ignore_errors=True)

    def _swap(self, marker_text: str) -> None:
        if (self.out / self.marker).exists():
            (self.out / self.marker).rename(self._trash / self.marker)
        for part in self.parts:
            staged, final = self.staging / part, self.out / part
            staged.mkdir(exist_ok=True)
            if final.exists():
                final.rename(self._trash / part)
            staged.rename(final)
        tmp = self.staging / f".{self.marker}.tmp"
        tmp.write_text(marker_text)
        os.replace(tmp, self.out / self.marker)
