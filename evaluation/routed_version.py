"""Registering the routed version a per-segment promotion makes (models/routing.py builds its artifact).

The routed version is a version of ``ads-relevance`` like any other, so every consumer loads the
champion as before. Its tags and description say which version serves which segment; it is found
again by its model digest, so the same routing of the same versions on the same data registers once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from evaluation.registry import REGISTERED_MODEL, log_model
from features.errors import UserError
from models.artifact import ArtifactError, model_digest
from models.routing import Source, plain_sources, write_routed

ROUTING_TAG = "adsrel.routing"
SOURCES_TAG = "adsrel.routing.sources"


def routing_tag(routing: Mapping[str, str]) -> str:
    """``task=version`` pairs, sorted by task: the registry's one-line view of a routing."""
    return " ".join(f"{task}={version}" for task, version in sorted(routing.items()))


def description(routing: Mapping[str, str], segments: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any]) -> str:
    """The routed version's description: each segment's source version and why."""
    lines = [f"Routed by adsrel promote (per-segment rollout) on {data['split']} of {data['manifest_digest'][:19]}: "
             "each segment is scored by the version named.", "", "| segment | version | reason |", "|---|---|---|"]
    for task, version in sorted(routing.items()):
        reason = (segments.get(task) or {}).get("reason", "not in the evaluation data: keeps its version")
        lines.append(f"| {task} | {version} | {reason} |")
    return "\n".join(lines) + "\n"


def sources_of(made_of: Mapping[str, Path]) -> dict[str, Source]:
    """The plain versions ``made_of`` (registered version -> model directory, plain or routed) stand for."""
    sources: dict[str, Source] = {}
    for version, model_dir in made_of.items():
        sources.update(plain_sources(model_dir, version))
    return sources


def register_routed(client, routing: Mapping[str, str], made_of: Mapping[str, Path], *, task_map_of: str,
                    data: Mapping[str, Any], segments: Mapping[str, Mapping[str, Any]],
                    find_version: Callable[[str], str | None], example: Callable[[Path], Any] | None = None
                    ) -> tuple[str, str, bool]:
    """The registered version that serves ``routing`` (task -> version): found by its digest
    (``find_version``), or written and registered (``example(model_dir)``: its input example).
    ``made_of``: registered version -> its model directory (plain or routed; a routed one stands for
    its sources). Returns (version, digest, registered now). A routing the artifacts cannot make
    (different backbones, a full fine-tune) is a UserError, before anything is registered."""
    sources = sources_of(made_of)
    with tempfile.TemporaryDirectory(prefix="adsrel-routed-") as tmp:
        try:
            model_dir = write_routed(Path(tmp) / "model", routing, sources, task_map_of=task_map_of,
                                     decision_data={"manifest_digest": data["manifest_digest"],
                                                    "split": data["split"]})
        except ArtifactError as exc:
            raise UserError(f"cannot route the segments as decided: {exc}") from None
        digest = model_digest(model_dir)
        version = find_version(digest)
        registered_now = version is None
        if registered_now:
            version = str(log_model(model_dir, input_example=example(model_dir) if example else None).version)
    # on a version found by its digest too: a registration that stopped before its tags gets them now
    client.set_model_version_tag(REGISTERED_MODEL, version, ROUTING_TAG, routing_tag(routing))
    client.set_model_version_tag(REGISTERED_MODEL, version, SOURCES_TAG,
                                 ",".join(sorted(set(routing.values()), key=int)))
    client.update_model_version(REGISTERED_MODEL, version, description=description(routing, segments, data))
    return version, digest, registered_now
