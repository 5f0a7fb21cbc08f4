"""The model artifact: a directory with adsrel_model.json, adapter.safetensors and tokenizer/.

Only trained tensors are stored (adapters and heads; the whole backbone for full fine-tuning), in
safetensors: no pickle anywhere. Loading rebuilds the backbone from its reference, checks its
fingerprint, injects the adapters and loads the tensors strictly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from features.task_map import TaskMap, parse_task_map
from models.backbone import fingerprint, load_backbone
from models.relevance import RelevanceModel, RelevanceModelConfig

FORMAT_VERSION = 1
META_FILE = "adsrel_model.json"
WEIGHTS_FILE = "adapter.safetensors"
TOKENIZER_DIR = "tokenizer"


class ArtifactError(ValueError):
    """The artifact is missing, malformed, or does not fit the base model it is loaded onto."""


def save_model(model: RelevanceModel, directory: str | Path, *, tokenizer: Any = None, **metadata: Any) -> Path:
    """Write ``model`` to ``directory``. ``metadata`` (tasks, max_length, calibrators, data digest, ...)
    is stored in adsrel_model.json beside the model's own description."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if model.encoder.layers and any(layer.merged for layer in model.encoder.layers.values()):
        raise ArtifactError("unmerge the model before saving it")
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.trainable_state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "method": model.config.adapter.method,
        "model": model.config.to_dict(),
        "pooling": model.pooling,
        "base_model": {"reference": model.config.backbone, "fingerprint": model.base_fingerprint,
                       "layers": model.config.backbone_layers},
        "trainable_parameters": model.trainable_parameter_count(),
        **metadata,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
    return out


def read_metadata(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not an adsrel model directory (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    return meta


def stored_task_map(meta: dict[str, Any]) -> TaskMap:
    """The task map a model was trained with, as its metadata stores it (tasks in id order)."""
    tasks = sorted(meta.get("tasks") or [], key=lambda t: t["id"])
    if not tasks:
        raise ArtifactError("the model artifact has no task list")
    return parse_task_map({"tasks": tasks, "unmapped": meta.get("unmapped") or "quarantine"})


def check_weights(directory: str | Path) -> None:
    """Raise ArtifactError unless adapter.safetensors opens (its header only is read: cheap)."""
    from safetensors import safe_open

    try:
        with safe_open(str(Path(directory) / WEIGHTS_FILE), framework="pt") as weights:
            weights.keys()
    except Exception as exc:  # noqa: BLE001 - missing, truncated or not safetensors at all
        raise ArtifactError(f"{Path(directory) / WEIGHTS_FILE} cannot be read: {str(exc).splitlines()[0]}") from None


def model_digest(directory: str | Path) -> str:
    """sha256 of adsrel_model.json and adapter.safetensors, in that order: the identity of a trained
    model (the same files registered twice are the same model; evaluation reports and batch scores
    carry it too)."""
    digest = hashlib.sha256()
    for name in (META_FILE, WEIGHTS_FILE):
        with open(Path(directory) / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def load_model(directory: str | Path, *, backbone: str | None = None, base: nn.Module | None = None
               ) -> RelevanceModel:
    """Rebuild the model saved in ``directory``; ``backbone`` overrides the stored base reference
    (e.g. the same weights at another path), ``base`` is the backbone itself, already loaded (adapters
    are injected into it). A base model whose fingerprint or shapes differ from the one trained on is
    refused with a clear message."""
    meta = read_metadata(directory)
    config = RelevanceModelConfig.from_dict(meta["model"])
    if backbone is not None:
        config.backbone = backbone
    if base is None:
        base = load_backbone(config.backbone, layers=config.backbone_layers)
    expected = meta["base_model"]["fingerprint"]
    found = fingerprint(base)
    if found != expected:
        raise ArtifactError(
            f"base model {config.backbone!r} has fingerprint {found}, but the adapters in {directory} were "
            f"trained on {meta['base_model']['reference']!r} with fingerprint {expected}"
        )
    model = RelevanceModel(base, config)
    model.pooling = meta["pooling"]
    tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
    expected_names = set(model.trainable_state_dict())
    if set(tensors) != expected_names:
        missing, extra = sorted(expected_names - set(tensors)), sorted(set(tensors) - expected_names)
        raise ArtifactError(f"{WEIGHTS_FILE} does not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
    own = model.state_dict()
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ArtifactError(
                f"{name} has shape {list(tensor.shape)} in {WEIGHTS_FILE}, the model expects {list(own[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    return model


def export_merged(model: RelevanceModel, task: int, directory: str | Path, *, tokenizer: Any = None) -> Path:
    """Export ``task``'s model as a plain Hugging Face model (adapters folded into the weights, no
    adsrel code needed to load it with ``AutoModel``), plus head.safetensors (``weight`` [1, hidden],
    ``bias`` [1]) and head.json saying how to pool."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.merged_copy(task).save_pretrained(str(out))
    head = {k: v.contiguous().cpu() for k, v in model.head.for_task(task).items()}
    save_file(head, str(out / "head.safetensors"))
    (out / "head.json").write_text(json.dumps({"pooling": model.pooling, "task": task}) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out
