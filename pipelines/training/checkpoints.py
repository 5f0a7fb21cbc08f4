"""Training checkpoints: where a run resumes from, kept apart from the model directory.

A checkpoint is Accelerate's ``save_state`` (trained weights in safetensors; optimizer, scheduler,
RNG and the sampler position in torch/pickle files) plus ``trainer_state.json`` (step, best
validation, the run's MLflow id and the identity it may resume under). The frozen backbone is not
saved: it is rebuilt from the config on resume and its fingerprint is part of the identity.

Checkpoints never live inside the model directory, which holds no pickle and is copied, registered
and shipped as it is. Loading one unpickles its optimizer and RNG state: a checkpoint directory is
trusted input only (your own runs, on your own storage).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from features.errors import UserError
from models.relevance import trained_names

TRAINER_STATE = "trainer_state.json"


def default_checkpoint_dir(output: Path) -> Path:
    """``<output>.checkpoints`` beside the model directory ``output``."""
    resolved = output.resolve()
    return resolved.parent / f"{resolved.name}.checkpoints"


@dataclass
class TrainState:
    """What a checkpoint records beside the tensors, and what a resumed run continues from."""

    identity: dict[str, Any]
    step: int = 0
    best_macro_auc: float | None = None
    best_step: int | None = None
    stale_evals: int = 0
    run_id: str | None = None
    valid: dict[str, float | None] = field(default_factory=dict)

    def record(self, valid: dict[str, float | None], step: int) -> bool:
        """Takes a validation; True when it is the best so far (the model artifact is then replaced)."""
        self.valid = valid
        macro = valid.get("macro")
        improved = macro is not None and (self.best_macro_auc is None or macro > self.best_macro_auc)
        if improved or (self.best_step is None and macro is None):
            self.best_macro_auc, self.best_step, self.stale_evals = macro, step, 0
            return True
        self.stale_evals += 1
        return False

    def stopped_early(self, patience: int) -> bool:
        return patience > 0 and self.stale_evals >= patience


def keep_trained_weights(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
    """Accelerate save-state hook: a checkpoint keeps the trained parameters only (the backbone is
    rebuilt on resume)."""
    for model, state in zip(models, weights, strict=False):  # sharded engines pass no weights
        trained = trained_names(model)
        for name in [k for k in state if k not in trained]:
            del state[name]


class Checkpoints:
    """The checkpoints of one training run in ``directory``: ``step-<8 digits>/``, the last ``keep``."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory, self.keep = Path(directory), max(1, keep)

    def latest(self) -> Path | None:
        done = sorted(p for p in self.directory.glob("step-*") if (p / TRAINER_STATE).is_file())
        return done[-1] if done else None

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def save(self, accelerator, state: TrainState, step: int) -> None:
        target = self.directory / f"step-{step:08d}"
        accelerator.save_state(str(target))
        if accelerator.is_main_process:
            (target / TRAINER_STATE).write_text(json.dumps({**asdict(state), "step": step}, indent=1, default=str))
            done = sorted(p for p in self.directory.glob("step-*") if (p / TRAINER_STATE).is_file())
            for old in done[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def resume(self, accelerator, model: torch.nn.Module, state: TrainState,
               defaults: dict[str, Any] | None = None) -> Path | None:
        """Loads the latest checkpoint into ``model``, the optimizer, the registered objects and
        ``state``; None when there is none. A checkpoint of another identity (config, data, backbone)
        or one lacking trained weights is refused. A key the checkpoint's identity lacks (a config key
        added since it was written) counts as its value in ``defaults``."""
        latest = self.latest()
        if latest is None:
            return None
        saved = json.loads((latest / TRAINER_STATE).read_text())
        identity = {**{k: v for k, v in (defaults or {}).items() if k in state.identity}, **saved["identity"]}
        if identity != state.identity:
            differs = sorted(k for k in state.identity.keys() | identity.keys()
                             if identity.get(k) != state.identity.get(k))
            raise UserError(f"{latest} was made with another config (differs in {', '.join(differs)}): "
                            "remove it, give another --checkpoints, or train with --set resume=false")
        self._load(accelerator, model, latest)
        for key, value in saved.items():
            setattr(state, key, value)
        return latest

    @staticmethod
    def _load(accelerator, model: torch.nn.Module, directory: Path) -> None:
        """``accelerator.load_state`` of a checkpoint written with :func:`keep_trained_weights`: the
        backbone's tensors are absent by design, every trained one must be there."""
        from accelerate.utils import SAFE_MODEL_NAME
        from safetensors import safe_open

        accelerator.load_state(str(directory), strict=False)
        with safe_open(str(directory / f"{SAFE_MODEL_NAME}.safetensors"), framework="pt") as saved:
            missing = sorted(trained_names(model) - set(saved.keys()))
        if missing:
            listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise UserError(f"{directory} lacks trained weights ({listed}): remove it or train with --set resume=false")
