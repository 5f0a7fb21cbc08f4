"""An output directory that only a run that succeeds replaces.

A run writes its parts (``shards/``, ``scores/``, ...) into a staging directory under the output
and :meth:`StagedOutput.publish` swaps them in at the end, its completion marker (``manifest.json``,
``summary.json``) last. A run that fails, for any reason, leaves an earlier complete output exactly
as it was; a killed run leaves its staging directory, which the next run into the same output
removes (its name carries the process id, so a live run's staging is never touched).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

from features.errors import UserError

STAGING, REPLACED = ".staging-", ".replaced-"
# pid-tagged names; an untagged one (an older version's) is removed once it is a day old
_OWNED = re.compile(rf"^(?:{re.escape(STAGING)}|{re.escape(REPLACED)})(\d+)-[0-9a-f]+$")
_UNTAGGED_AFTER_S = 24 * 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Removes what killed runs left under ``out``; returns what it removed."""
    removed = []
    for entry in out.glob(".*"):
        if not entry.is_dir() or not entry.name.startswith((STAGING, REPLACED)):
            continue
        owned = _OWNED.match(entry.name)
        stale = (not _alive(int(owned.group(1))) if owned
                 else time.time() - entry.stat().st_mtime > _UNTAGGED_AFTER_S)
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class StagedOutput:
    """``with StagedOutput(out, ("shards", "quarantine"), "manifest.json") as staged:`` write under
    ``staged.path(part)``, then ``staged.publish(text_of_the_marker)``."""

    def __init__(self, out: str | Path, parts: tuple[str, ...], marker: str) -> None:
        self.out, self.parts, self.marker = Path(out), parts, marker
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--output is not a directory: {out}")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output {out}: {exc.strerror or exc}") from None
        remove_stale(self.out)
        self.staging = self.out / f"{STAGING}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, part: str) -> Path:
        return self.staging / part

    def publish(self, marker_text: str) -> None:
        """Swaps the staged parts in, then writes the marker (atomically): between the first rename
        and the marker the output has no marker, so it never reads as complete half-swapped."""
        (self.out / self.marker).unlink(missing_ok=True)
        trash = self.out / f"{REPLACED}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        trash.mkdir()
        for part in self.parts:
            staged, final = self.staging / part, self.out / part
            staged.mkdir(exist_ok=True)
            if final.exists():
                final.rename(trash / part)
            staged.rename(final)
        tmp = self.out / f".{self.marker}.tmp"
        tmp.write_text(marker_text)
        os.replace(tmp, self.out / self.marker)
        shutil.rmtree(trash, ignore_errors=True)
