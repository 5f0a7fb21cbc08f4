"""Injecting adapters into any Hugging Face (or plain torch) model, and routing task ids to them.

Injection is separate from the layers (as in PEFT's tuners/*/model.py): the targeted ``nn.Linear``
modules are swapped in place for :class:`~models.adapter_layer.AdapterLayer` wrappers, without
editing or forking model code. At call time, :class:`MultiTaskModel` passes each example's task id to
every adapter through forward pre-hooks that live only for the duration of that call, so the wrapped
model's own forward signature is untouched and there is no global state.

Gradient checkpointing recomputes each transformer block in the backward pass, after those hooks are
gone (PEFT shipped silent zero gradients this way). So the model's own checkpointing is not used:
:meth:`MultiTaskModel.enable_gradient_checkpointing` wraps each block's forward in a non-reentrant
checkpoint whose function takes the task ids as an argument and routes them to the block's adapters
itself, on the first pass and on the recomputation alike (non-reentrant: no input needs to require
grad, so frozen embeddings are no problem either).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.adapter_layer import AdapterLayer
from models.backbone import block_list
from models.baselines import LoRALinear, MoELoRALinear, MultiLoRALinear, TaskLoRALinear
from models.config import AdapterConfig, matches_target
from models.mtl_lora import MTLLoRALinear


def make_layer(base: nn.Linear, config: AdapterConfig) -> AdapterLayer:
    """The adapter layer of ``config.method`` around ``base``."""
    common = {"num_tasks": config.num_tasks, "rank": config.rank, "alpha": config.alpha, "dropout": config.dropout}
    if config.method == "mtl_lora":
        return MTLLoRALinear(
            base, num_up=config.num_up, temperature=config.temperature, lambda_form=config.lambda_form,
            mixing_init=config.mixing_init, **common
        )
    if config.method == "lora":
        return LoRALinear(base, **common)
    if config.method == "task_lora":
        return TaskLoRALinear(base, **common)
    if config.method == "multi_lora":
        return MultiLoRALinear(base, num_up=config.num_up, **common)
    if config.method == "moe_lora":
        return MoELoRALinear(base, num_up=config.num_up, **common)
    raise ValueError(f"method {config.method!r} has no adapter layer")


def inject_adapters(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Freeze ``model`` and replace every targeted ``nn.Linear`` with an adapter layer, in place.

    Returns the dotted names of the adapted modules. Raises ValueError when nothing matches.
    ``method="full"`` injects nothing and leaves every parameter trainable.
    """
    if config.method == "full":
        model.requires_grad_(True)
        return []
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    targets = config.targets_for(model_type)
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not isinstance(module, AdapterLayer) and matches_target(name, targets)
    ]
    # A Linear inside an adapter (its .base) is never a target of its own.
    names = [n for n in names if not n.endswith(".base")]
    if not names:
        raise ValueError(f"target_modules {targets!r} match no nn.Linear in {type(model).__name__}")
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make_layer(getattr(parent, child), config))
    return names


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """The adapter layers of ``model`` by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLayer)}


def check_task_ids(task_ids: Any, batch_size: int | None, num_tasks: int) -> torch.Tensor:
    """Validate task ids once per call, with messages a user can act on."""
    if task_ids is None:
        raise ValueError("this model is multi-task: pass task_ids=LongTensor[batch] with each example's task")
    if not isinstance(task_ids, torch.Tensor) or task_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"task_ids must be an integer tensor, got {type(task_ids).__name__}")
    if task_ids.dim() != 1:
        raise ValueError(f"task_ids must be 1-D [batch], got shape {list(task_ids.shape)}")
    if batch_size is not None and task_ids.shape[0] != batch_size:
        raise ValueError(f"task_ids has {task_ids.shape[0]} entries for a batch of {batch_size}")
    if task_ids.numel():
        low, high = int(task_ids.min()), int(task_ids.max())
        if low < 0 or high >= num_tasks:
            raise ValueError(f"task_ids must be in [0, {num_tasks}), got values in [{low}, {high}]")
    return task_ids.long()


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    for key in ("input_ids", "inputs_embeds"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key].shape[0]
    for value in args:
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    return None


@contextlib.contextmanager
def routed(layers: Iterable[AdapterLayer], task_ids: torch.Tensor | None) -> Iterator[None]:
    """Within the block, each of ``layers`` receives ``task_ids`` (a forward pre-hook per layer)."""

    def inject(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs["task_ids"] = task_ids
        return args, kwargs

    handles = [layer.register_forward_pre_hook(inject, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _routed_call(forward: Callable[..., Any], layers: list[AdapterLayer], task_ids: torch.Tensor | None,
                 *args: Any, **kwargs: Any) -> Any:
    """A block's forward with its adapters routed: what checkpoint runs, and runs again in backward."""
    with routed(layers, task_ids):
        return forward(*args, **kwargs)


class MultiTaskModel(nn.Module):
    """A model with adapters injected; ``model(**batch, task_ids=LongTensor[batch])``."""

    def __init__(self, model: nn.Module, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.adapted_modules = inject_adapters(model, config)
        self.model = model
        self._task_ids: torch.Tensor | None = None  # the ids of the call in progress
        self.gradient_checkpointing = False

    @property
    def layers(self) -> dict[str, AdapterLayer]:
        return adapter_layers(self.model)

    @property
    def task_aware(self) -> bool:
        return any(layer.task_aware and not layer.merged for layer in self.layers.values())

    @contextlib.contextmanager
    def route(self, task_ids: torch.Tensor | None) -> Iterator[None]:
        """Within the block, every adapter layer receives ``task_ids``."""
        self._task_ids = task_ids
        try:
            with routed(self.layers.values(), task_ids):
                yield
        finally:
            self._task_ids = None

    def forward(self, *args: Any, task_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if self.task_aware:
            task_ids = check_task_ids(task_ids, _batch_size(args, kwargs), self.config.num_tasks)
        elif task_ids is not None:
            task_ids = task_ids.long()
        with self.route(task_ids):
            return self.model(*args, **kwargs)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each transformer block in the backward pass instead of keeping its activations
        (in training mode with gradients on; evaluation runs as usual), task routing kept."""
        if self.gradient_checkpointing:
            return
        _, blocks = block_list(self.model)
        if getattr(getattr(self.model, "config", None), "use_cache", False):
            self.model.config.use_cache = False  # a decoder's cache would take each recomputed block's keys twice
        for block in blocks:
            layers = list(adapter_layers(block).values())
            forward = block.forward

            def checkpointed(*args: Any, _forward=forward, _layers=layers, **kwargs: Any) -> Any:
                if not (self.training and torch.is_grad_enabled()):
                    return _forward(*args, **kwargs)
                return checkpoint(_routed_call, _forward, _layers, self._task_ids, *args, use_reentrant=False,
                                  **kwargs)

            block.forward = checkpointed  # an instance attribute: the state dict's names do not change
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        _, blocks = block_list(self.model)
        for block in blocks:
            block.__dict__.pop("forward", None)
        self.gradient_checkpointing = False

    def merge(self, task: int = 0) -> None:
        """Fold ``task``'s update into every adapted weight; then task_ids is no longer needed."""
        for layer in self.layers.values():
            layer.merge(task)

    def unmerge(self) -> None:
        for layer in self.layers.values():
            layer.unmerge()

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def merged_copy(self, task: int) -> nn.Module:
        """A plain copy of the wrapped model with ``task``'s update folded in and no adapter modules."""
        if self.gradient_checkpointing:
            raise ValueError("disable gradient checkpointing before copying the model")
        plain = copy.deepcopy(self.model)
        for name, layer in adapter_layers(plain).items():
            layer.merge(task)
            parent_name, _, child = name.rpartition(".")
            setattr(plain.get_submodule(parent_name) if parent_name else plain, child, layer.base)
        return plain.requires_grad_(True)
