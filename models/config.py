"""AdapterConfig: every knob of the multi-task adapters in one dataclass (as PEFT's LoraConfig)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

METHODS = ("mtl_lora", "lora", "task_lora", "multi_lora", "moe_lora", "full")
LAMBDA_FORMS = ("full", "diagonal")
# w_t at the start: kaiming-uniform as in the paper's reference code, or zeros so that every task
# starts mixing its up-projections equally (as AdapterHub does).
MIXING_INITS = ("kaiming", "uniform")

# Linear layers adapted when target_modules is not given, by Hugging Face model_type. BERT's
# "dense" is spelled out so that the (unused) pooler is not adapted.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
for _alias in ("roberta", "xlm-roberta", "electra"):
    DEFAULT_TARGETS[_alias] = DEFAULT_TARGETS["bert"]
for _alias in ("mistral", "qwen2", "qwen3", "gemma", "gemma2"):
    DEFAULT_TARGETS[_alias] = DEFAULT_TARGETS["llama"]


@dataclass
class AdapterConfig:
    """How to adapt a frozen model to ``num_tasks`` tasks.

    ``target_modules`` is a list of module names, each matching a module whose dotted name equals it
    or ends with ``"." + name`` (as in PEFT), or one string treated as a regular expression that must
    match the whole dotted name. ``None`` takes :data:`DEFAULT_TARGETS` for the model's type.
    ``rank``/``alpha``/``dropout`` apply to every method; ``num_up`` is the number of shared
    up-projections (mtl_lora) or of parallel LoRAs / experts (multi_lora, moe_lora);
    ``mixing_init`` starts mtl_lora's w_t random (kaiming) or equal for every up-projection (uniform).
    """

    method: str = "mtl_lora"
    num_tasks: int = 1
    rank: int = 8
    num_up: int = 3
    temperature: float = 0.1
    alpha: float = 16.0
    dropout: float = 0.0
    lambda_form: str = "full"
    mixing_init: str = "kaiming"
    target_modules: list[str] | str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.lambda_form not in LAMBDA_FORMS:
            raise ValueError(f"lambda_form must be one of {', '.join(LAMBDA_FORMS)}, got {self.lambda_form!r}")
        if self.mixing_init not in MIXING_INITS:
            raise ValueError(f"mixing_init must be one of {', '.join(MIXING_INITS)}, got {self.mixing_init!r}")
        for name in ("num_tasks", "rank", "num_up"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as exc:
                raise ValueError(f"target_modules is not a valid regular expression: {exc}") from None
        elif self.target_modules is not None:
            if not isinstance(self.target_modules, list | tuple):
                raise ValueError("target_modules must be a list of module names or one regular expression")
            self.target_modules = [str(t) for t in self.target_modules]
            if not self.target_modules:
                raise ValueError("target_modules must not be empty")

    def targets_for(self, model_type: str | None) -> list[str] | str:
        """The target list for a model of ``model_type``, resolving the default."""
        if self.target_modules is not None:
            return self.target_modules
        if model_type in DEFAULT_TARGETS:
            return DEFAULT_TARGETS[model_type]
        raise ValueError(
            f"no default target_modules for model type {model_type!r}: set target_modules "
            f"(known defaults: {', '.join(sorted(DEFAULT_TARGETS))})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown adapter config keys: {', '.join(unknown)}")
        return cls(**data)


def matches_target(name: str, targets: list[str] | str) -> bool:
    """Whether the module called ``name`` is one of ``targets`` (see :class:`AdapterConfig`)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)
