"""TrainConfig: every knob of `adsrel train` in one dataclass (nanoGPT style), read from an optional
YAML file and ``--set key=value`` overrides, validated before any work starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from features.config_file import read_yaml_mapping, reject_unknown_keys
from features.errors import UserError
from models.backbone import DEFAULT_BACKBONE

if TYPE_CHECKING:
    from models.relevance import RelevanceModelConfig

PRECISIONS = ("auto", "no", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant_with_warmup")
CALIBRATIONS = ("none", "platt", "isotonic")  # evaluation.calibration.METHODS (not imported: no sklearn here)


@dataclass
class TrainConfig:
    # model
    method: str = "mtl_lora"
    backbone: str = DEFAULT_BACKBONE
    backbone_layers: int | None = None  # the backbone's first N transformer blocks only (a smaller student)
    rank: int = 8
    num_up: int = 3
    temperature: float = 0.5  # τ, lr and task_lr_scale: the mtl_lora setting the quality benchmark chose on valid
    alpha: float = 16.0
    dropout: float = 0.0
    lambda_form: str = "full"
    mixing_init: str = "kaiming"  # w_t at the start (mtl_lora): kaiming (random) or uniform (equal mixing)
    target_modules: list[str] | str | None = None
    head: str = "per_task"
    head_dropout: float = 0.1
    pooling: str = "auto"
    # data
    max_length: int = 128
    segment_in_text: bool = False
    task_sampling_temperature: float = 2.0
    tasks: list[str] | None = None  # train on these manifest tasks only (all by default)
    bucket_factor: int = 50  # batches tokenised together and grouped by length
    valid_max_rows: int = 20_000  # per task
    # optimisation
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 32  # per process; global = batch_size x processes x grad_accum
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    task_lr_scale: float = 5.0  # lr of Λ_t and w_t (mtl_lora) = lr x this
    lr_schedule: str = "linear"
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # bf16 where the hardware has it
    gradient_checkpointing: bool = False  # recompute each block in backward: less activation memory, more compute
    seed: int = 0
    # distillation: learn from the labels and from a teacher's probabilities on the train split
    teacher: str | None = None  # a models:/ URI or model directory; null = labels only
    distill_alpha: float = 0.5  # loss = (1 - alpha) x label loss + alpha x teacher loss
    distill_temperature: float = 2.0  # teacher and student logits divided by T (the teacher loss x T^2)
    teacher_cache: str = "~/.cache/adsrel/teacher-scores"  # the teacher's scores, by teacher, data and tasks
    # validation, checkpoints, logging
    eval_every: int = 0  # steps; 0 = once per epoch
    early_stopping_patience: int = 0  # evaluations without a better macro AUC; 0 = never stop early
    checkpoint_every: int = 0  # steps; 0 = at each evaluation
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the last checkpoint in <output>.checkpoints if its config matches
    log_every: int = 20
    # per-task calibration of the best model's scores, fitted on the valid split (evaluation.calibration)
    calibration: str = "none"  # none, platt, isotonic
    mlflow: bool = True
    register: bool = True

    def __post_init__(self) -> None:
        for ok, message in self._checks():
            if not ok:
                raise UserError(f"config: {message}")
        try:  # the model's own keys are checked where they are defined, once
            self.model_config(num_tasks=1)
        except ValueError as exc:
            raise UserError(f"config: {exc}") from None

    def _checks(self) -> list[tuple[bool, str]]:
        """The keys of the loop, its data and its bookkeeping (the model's keys: :meth:`model_config`)."""
        names = self.tasks
        return [
            (isinstance(self.backbone, str) and bool(self.backbone), "backbone must be a model directory or hub name"),
            (names is None or (isinstance(names, list) and bool(names) and all(isinstance(t, str) for t in names)),
             "tasks must be a non-empty list of task names (or null for all)"),
            (self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {', '.join(PRECISIONS)}"),
            (self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {', '.join(SCHEDULES)}"),
            (self.calibration in CALIBRATIONS, f"calibration must be one of {', '.join(CALIBRATIONS)}"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.max_length >= 8, "max_length must be >= 8"),
            (self.bucket_factor >= 1, "bucket_factor must be >= 1"),
            (self.valid_max_rows >= 1, "valid_max_rows must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.task_lr_scale > 0, "task_lr_scale must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0: no clipping)"),
            (self.epochs >= 0 and self.max_steps >= 0, "epochs and max_steps must be >= 0"),
            (self.epochs > 0 or self.max_steps > 0, "give epochs > 0 or max_steps > 0"),
            (self.task_sampling_temperature > 0, "task_sampling_temperature must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.seed < 2**32, "seed must be in [0, 2**32)"),
            (self.eval_every >= 0 and self.checkpoint_every >= 0, "eval_every and checkpoint_every must be >= 0"),
            (self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0 (0: never stop early)"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.teacher is None or (isinstance(self.teacher, str) and bool(self.teacher)),
             "teacher must be a models:/ URI or a model directory (or null)"),
            (0.0 <= self.distill_alpha <= 1.0, "distill_alpha must be in [0, 1]"),
            (self.distill_temperature > 0, "distill_temperature must be > 0"),
        ]

    def model_config(self, num_tasks: int) -> RelevanceModelConfig:
        """The model these keys describe, for ``num_tasks`` tasks."""
        from models.config import AdapterConfig
        from models.relevance import RelevanceModelConfig

        adapter = AdapterConfig(
            method=self.method, num_tasks=num_tasks, rank=self.rank, num_up=self.num_up,
            temperature=self.temperature, alpha=self.alpha, dropout=self.dropout, lambda_form=self.lambda_form,
            mixing_init=self.mixing_init, target_modules=self.target_modules,
        )
        return RelevanceModelConfig(backbone=self.backbone, adapter=adapter, head=self.head, pooling=self.pooling,
                                    head_dropout=self.head_dropout, backbone_layers=self.backbone_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_identity(self) -> dict[str, Any]:
        """The keys that decide the trained weights: a checkpoint resumes only under the same ones."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}


# Keys that change how a run is watched or kept, not what it computes.
RUNTIME_KEYS = frozenset({"resume", "log_every", "mlflow", "register", "keep_checkpoints", "checkpoint_every",
                          "teacher_cache", "gradient_checkpointing"})  # checkpointing: the same gradients


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, booleans, lists: ``target_modules=[query,value]``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects key=value, got {item!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    values = read_yaml_mapping(path, "config", "training keys") if path else {}
    for item in overrides or []:
        key, value = parse_override(item)
        values[key] = value
    reject_unknown_keys(values, sorted(FIELDS), "config")
    for key, value in list(values.items()):
        kind = FIELDS[key].type
        if kind in ("int | None", "str | None"):  # null allowed, else as the plain kind
            if value is None:
                continue
            kind = kind.removesuffix(" | None")
        try:
            if kind == "int":
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                values[key] = int(float(value))
            elif kind == "float":
                if isinstance(value, bool) or not math.isfinite(float(value)):
                    raise ValueError
                values[key] = float(value)
            elif (kind == "bool" and not isinstance(value, bool)) or (kind == "str" and not isinstance(value, str)):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            want = "a finite number" if kind == "float" else kind
            raise UserError(f"config: {key} must be {want}, got {value!r}") from None
    return TrainConfig(**values)
