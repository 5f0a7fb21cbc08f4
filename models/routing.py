"""A routed model: one artifact that scores each segment (task) with the trained parameters of the
registered version that serves it, over one frozen backbone.

A routed artifact is a model directory like any other (adsrel_model.json, adapter.safetensors,
tokenizer/), so every consumer loads it as it loads a plain one (:func:`load_scorer`)::

    adsrel_model.json    method "routed", the task map that routes rows, routing {task: {version,
                         digest}}, sources {version: {digest, method}}, the shared base model
    adapter.safetensors  no tensors: the trained ones are the sources'
    tokenizer/           the sources' tokenizer (they all have the same)
    sources/<version>/   each source version's artifact, byte for byte (its model digest is the
                         version's own)

Loading builds the backbone once and gives each source a structural copy of it that shares the
frozen tensors (models.backbone.shared_copy): memory grows by each source's adapters and heads only.
Sources score one after another; a source that folds its update into the shared weights
(``merge``) restores them before the next one runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.torch import save_file

from models.artifact import (
    FORMAT_VERSION,
    META_FILE,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    ArtifactError,
    check_weights,
    model_digest,
    read_metadata,
    stored_task_map,
)
from models.scoring import CandidateScoring, Scorer

ROUTED = "routed"
SOURCES_DIR = "sources"


@dataclass(frozen=True)
class Source:
    """A plain (not routed) model artifact and the registered version it is."""

    version: str
    model_dir: Path
    digest: str


def is_routed(meta: Mapping[str, Any]) -> bool:
    return meta.get("method") == ROUTED


def plain_sources(model_dir: str | Path, version: str) -> dict[str, Source]:
    """The plain versions that registered ``version`` (in ``model_dir``) is made of: itself, or the
    sources of a routed version."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    if not is_routed(meta):
        return {version: Source(version, model_dir, model_digest(model_dir))}
    return {v: Source(v, model_dir / SOURCES_DIR / v, entry["digest"]) for v, entry in meta["sources"].items()}


def serving(model_dir: str | Path, version: str) -> dict[str, str]:
    """Task -> the version whose parameters score it, for registered ``version`` in ``model_dir``."""
    meta = read_metadata(model_dir)
    if is_routed(meta):
        return {task: entry["version"] for task, entry in meta["routing"].items()}
    return {t["name"]: version for t in meta.get("tasks") or []}


def check_loadable(model_dir: str | Path) -> None:
    """Raise ArtifactError unless every weights file of the artifact (a routed one's sources too) opens."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    check_weights(model_dir)
    for version in meta.get("sources") or {} if is_routed(meta) else {}:
        check_weights(model_dir / SOURCES_DIR / version)


def tokenizer_digest(model_dir: Path) -> str:
    """sha256 of the files of ``model_dir``'s tokenizer/ (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted((model_dir / TOKENIZER_DIR).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return "sha256:" + digest.hexdigest()


def _check_sources(routing: Mapping[str, str], sources: Mapping[str, Source]) -> dict[str, dict[str, Any]]:
    """The metadata of each source that serves a task, after the checks that make a routed model
    sound: one frozen backbone, one tokenizer, adapters (not full fine-tunes), every task known."""
    metas: dict[str, dict[str, Any]] = {}
    for version in sorted(set(routing.values()), key=int):
        if version not in sources:
            raise ArtifactError(f"routing names version {version}, whose artifact was not given")
        metas[version] = read_metadata(sources[version].model_dir)
        if is_routed(metas[version]):
            raise ArtifactError(f"version {version} is routed itself: give its sources")
        if metas[version]["method"] == "full":
            raise ArtifactError(f"version {version} is a full fine-tune (its own backbone): a routed model "
                                "shares one frozen backbone between adapters")
    first = min(metas, key=int)
    for version, meta in metas.items():
        if meta["base_model"]["fingerprint"] != metas[first]["base_model"]["fingerprint"]:
            raise ArtifactError(
                f"versions {first} and {version} have different backbones ({metas[first]['base_model']['reference']}"
                f" {metas[first]['base_model']['fingerprint']} != {meta['base_model']['reference']} "
                f"{meta['base_model']['fingerprint']}): a routed model has one frozen backbone")
        if tokenizer_digest(sources[version].model_dir) != tokenizer_digest(sources[first].model_dir):
            raise ArtifactError(f"versions {first} and {version} have different tokenizers")
    for task, version in routing.items():
        known = {t["name"] for t in metas[version].get("tasks") or []}
        if task not in known:
            raise ArtifactError(f"version {version} cannot serve task {task}: it was not trained for it")
    return metas


def routing_problem(routing: Mapping[str, str], sources: Mapping[str, Source]) -> str | None:
    """Why ``sources`` cannot make a routed model serving ``routing`` (different backbones, tokenizers, a
    full fine-tune, an unknown task), or None when they can."""
    try:
        _check_sources(routing, sources)
    except ArtifactError as exc:
        return str(exc)
    return None


def write_routed(directory: str | Path, routing: Mapping[str, str], sources: Mapping[str, Source], *,
                 task_map_of: str, **metadata: Any) -> Path:
    """Write the routed artifact that serves each task of ``routing`` (task -> version) with that
    version's parameters. ``task_map_of`` names the source whose task map routes rows to tasks;
    ``metadata`` (e.g. ``decision_data``: the data the decision was made on) is stored beside the routing."""
    metas = _check_sources(routing, sources)
    if task_map_of not in metas:
        raise ArtifactError(f"the task map's version {task_map_of} serves no task")
    task_meta = metas[task_map_of]
    unrouted = sorted({t["name"] for t in task_meta["tasks"]} - set(routing))
    if unrouted:
        raise ArtifactError(f"no version serves task(s) {', '.join(unrouted)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for version in metas:
        target = out / SOURCES_DIR / version
        shutil.copytree(sources[version].model_dir, target, dirs_exist_ok=True)
        if model_digest(target) != sources[version].digest:
            raise ArtifactError(f"the artifact of version {version} does not have its registered digest")
    shutil.copytree(sources[task_map_of].model_dir / TOKENIZER_DIR, out / TOKENIZER_DIR, dirs_exist_ok=True)
    save_file({}, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "method": ROUTED,
        "base_model": task_meta["base_model"],
        "tasks": task_meta["tasks"],
        "unmapped": task_meta.get("unmapped") or "quarantine",
        "routing": {task: {"version": v, "digest": sources[v].digest} for task, v in sorted(routing.items())},
        "sources": {v: {"digest": sources[v].digest, "method": metas[v]["method"],
                        "tasks": sorted(t for t, s in routing.items() if s == v)} for v in metas},
        **metadata,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return out


class RoutedScorer(CandidateScoring):
    """The scorer of a routed artifact: rows are routed to tasks by its task map, then each task's
    rows are scored by the scorer of the version that serves it (its text, calibration and merge)."""

    def __init__(self, meta: dict[str, Any], sources: dict[str, Scorer]) -> None:
        self.meta = meta
        self.sources = sources
        self.task_map = stored_task_map(meta)
        self.task_names = [t.name for t in self.task_map.tasks]
        self.routing = {task: entry["version"] for task, entry in meta["routing"].items()}

    @classmethod
    def load(cls, model_dir: str | Path, *, backbone: str | None = None, **kwargs: Any) -> RoutedScorer:
        from transformers import AutoTokenizer

        from models.backbone import load_backbone, shared_copy

        model_dir = Path(model_dir)
        meta = read_metadata(model_dir)
        base = load_backbone(backbone or meta["base_model"]["reference"], layers=meta["base_model"].get("layers"))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir / TOKENIZER_DIR))
        sources = {}
        for version, entry in meta["sources"].items():
            source_dir = model_dir / SOURCES_DIR / version
            if model_digest(source_dir) != entry["digest"]:
                raise ArtifactError(f"{source_dir} does not have version {version}'s digest {entry['digest']}")
            sources[version] = Scorer.load(source_dir, base=shared_copy(base), tokenizer=tokenizer, **kwargs)
        return cls(meta, sources)

    def source_versions(self, tasks: Sequence[str]) -> list[str | None]:
        return [self.routing.get(t) for t in tasks]

    def predict(self, frame: pd.DataFrame, *, merge: bool = True) -> np.ndarray:
        names = np.asarray(self.task_names, dtype=object)[self.task_ids(frame)]
        versions = np.asarray(self.source_versions(names), dtype=object)
        unrouted = sorted(set(names[versions == None]))  # noqa: E711 - elementwise
        if unrouted:
            raise ValueError(f"no version serves task(s) {', '.join(unrouted)} in this routed model")
        probs = np.full(len(frame), np.nan)
        for version, scorer in self.sources.items():
            rows = np.flatnonzero(versions == version)
            if rows.size:  # by task name: the source's own task ids, text and calibrators
                probs[rows] = scorer.predict(frame.iloc[rows].assign(task=names[rows]), merge=merge)
        return probs


def load_scorer(model_dir: str | Path, *, backbone: str | None = None, **kwargs: Any) -> Scorer | RoutedScorer:
    """The scorer of any adsrel artifact, plain or routed."""
    if is_routed(read_metadata(model_dir)):
        return RoutedScorer.load(model_dir, backbone=backbone, **kwargs)
    return Scorer.load(model_dir, backbone=backbone, **kwargs)
