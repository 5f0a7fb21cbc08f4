"""The one model a scoring run uses, pinned before any row is read.

``models:/name@alias`` is resolved to the version it names now, so a champion that moves mid-run
never mixes two models in one output; every row and the summary carry its name, version and digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evaluation.registry import parse_models_uri, registered_version, resolve_model_dir
from features.errors import UserError
from features.task_map import TaskMap
from models.artifact import ArtifactError, model_digest, read_metadata, stored_task_map
from models.routing import check_loadable

LOGGED_MODEL_URI = re.compile(r"^models:/m-[0-9a-f]+/?$")  # a logged (not registered) model


@dataclass(frozen=True)
class ResolvedModel:
    """Where the user pointed, what that resolved to, and the model's identity."""

    uri: str
    resolved: str
    name: str | None
    version: str | None
    digest: str
    model_dir: Path

    def task_map(self) -> TaskMap:
        return stored_task_map(read_metadata(self.model_dir))

    def columns(self, scored_at: datetime, shadow: ResolvedModel | None = None) -> dict[str, Any]:
        """The values of features.candidates.RUN_COLUMNS: the model, the shadow model, when it scored."""
        return {"model_name": self.name or self.uri, "model_version": self.version, "model_digest": self.digest,
                "shadow_version": shadow.version if shadow else None, "scored_at": scored_at}

    def identity(self) -> dict[str, Any]:
        """The model as the summary names it."""
        return {"uri": self.uri, "resolved": self.resolved, "name": self.name, "version": self.version,
                "digest": self.digest}


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
        stored_task_map(read_metadata(model_dir))
        check_loadable(model_dir)
    except (ArtifactError, OSError) as exc:
        raise UserError(f"{uri_or_dir} is not a usable adsrel model: {exc}") from None
    return ResolvedModel(uri_or_dir, resolved, parts.name if parts else None, version, digest, model_dir)
