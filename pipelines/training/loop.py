"""`adsrel train`: one readable training loop (nanoGPT style) on Hugging Face Accelerate.

shards (pyarrow, streaming, task-balanced) -> RelevanceModel (frozen backbone + adapters + head)
-> AdamW with warmup + decay, gradient accumulation and clipping, mixed precision where the hardware
has it -> per-task validation AUC, best model by macro AUC -> model artifact in --output, MLflow run
and registered pyfunc. Checkpoints go to their own directory (pipelines/training/checkpoints.py), never into
the model directory. ``accelerate launch`` / ``torchrun`` run it data parallel with no change: every
process draws the same global batch and trains on its own slice of it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from features.errors import UserError
from features.progress import Progress, log
from features.sampling import TaskBalancedBatches
from features.shards import MODEL_COLUMNS, manifest_digest, read_manifest, split_files, task_names
from features.tokenize import PairEncoder
from models.backbone import load_backbone, load_tokenizer
from models.mtl_lora import MTLLoRALinear
from models.relevance import RelevanceModel
from pipelines.training.checkpoints import Checkpoints, TrainState, default_checkpoint_dir, keep_trained_weights
from pipelines.training.config import DEFAULTS, TrainConfig
from pipelines.training.model_output import calibrate_artifact, clear_model_dir, save_artifact
from pipelines.training.teacher import Teacher, load_teacher
from pipelines.training.tracking import TrainTracker, input_example
from pipelines.training.validation import validate, validation_frame


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run stops, checkpoints and the best model stay as they were."""

    exit_code = 3


@dataclass
class TrainResult:
    output: Path
    steps: int
    best_macro_auc: float | None
    examples_per_second: float | None  # None when this call trained no step
    valid: dict[str, float | None] = field(default_factory=dict)
    run_id: str | None = None
    model_version: str | None = None


def build_model(config: TrainConfig, num_tasks: int) -> RelevanceModel:
    model_config = config.model_config(num_tasks)
    try:
        backbone = load_backbone(config.backbone, layers=config.backbone_layers)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise UserError(f"backbone: {exc}") from None
    model = RelevanceModel(backbone, model_config)
    if config.gradient_checkpointing:
        model.encoder.enable_gradient_checkpointing()
    return model


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters as optimizer groups: MTL-LoRA's task-specific Λ_t and w_t at
    ``lr x task_lr_scale`` (the schedule scales both groups alike), everything else at ``lr``."""
    task_specific = {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, MTLLoRALinear)
                     for p in m.task_parameters}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n not in task_specific], "lr": config.lr},
              {"params": [p for n, p in named if n in task_specific], "lr": config.lr * config.task_lr_scale}]
    return [g for g in groups if g["params"]]


def tokenizer_of(config: TrainConfig):
    try:
        return load_tokenizer(config.backbone)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"backbone {config.backbone!r}: cannot load its tokenizer: {reason}") from None


def training_tasks(manifest: dict[str, Any], config: TrainConfig) -> tuple[list[str], list[int]]:
    """All task names of the manifest (the model's tasks) and the ids trained on."""
    names = task_names(manifest)
    if config.tasks is None:
        return names, list(range(len(names)))
    unknown = [t for t in config.tasks if t not in names]
    if unknown:
        raise UserError(f"config: tasks not in the manifest: {', '.join(unknown)} (manifest has {', '.join(names)})")
    return names, [names.index(t) for t in config.tasks]


@dataclass(frozen=True)
class Schedule:
    """How many optimizer steps, and how often to validate and checkpoint."""

    total_steps: int
    global_batch: int
    eval_every: int
    checkpoint_every: int

    @classmethod
    def of(cls, config: TrainConfig, train_rows: int, world: int) -> Schedule:
        global_batch = config.batch_size * world * config.grad_accum
        steps_per_epoch = max(1, math.ceil(train_rows / global_batch))
        total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
        eval_every = config.eval_every or steps_per_epoch
        return cls(total, global_batch, eval_every, config.checkpoint_every or eval_every)


def train_files(shards: Path, names: list[str], ids: list[int]) -> dict[int, list[Path]]:
    files = split_files(shards, "train")
    by_task = {t: files[names[t]] for t in ids if names[t] in files}
    if not by_task:
        raise UserError(f"{shards} has no train rows for the tasks trained on")
    return by_task


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Accelerate runs several CPU processes (gloo) only when told to use the CPU.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum, cpu=multi_cpu)


def relevance_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                   teacher: torch.Tensor | None = None, *, alpha: float = 0.5, temperature: float = 1.0
                   ) -> torch.Tensor:
    """Weighted binary cross-entropy on the labels; with the teacher's probabilities, (1 - alpha) x that
    + alpha x T^2 x the cross-entropy of the student's logit / T against the teacher's logit / T (Hinton
    et al.'s distillation for one logit; T^2 keeps the soft gradients' scale as T grows)."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if teacher is not None:
        soft = torch.sigmoid(torch.logit(teacher.clamp(1e-6, 1 - 1e-6)) / temperature)
        distilled = F.binary_cross_entropy_with_logits(logits / temperature, soft, reduction="none")
        loss = (1 - alpha) * loss + alpha * temperature**2 * distilled
    return (loss * weights).mean()


def train_step(model, batches: TaskBalancedBatches, encoder: PairEncoder, optimizer, accelerator,
               config: TrainConfig, trainable: list[torch.nn.Parameter], teacher: Teacher | None = None
               ) -> tuple[float, int]:
    """One optimizer step over ``grad_accum`` batches; returns the summed loss and the examples seen.
    A NaN or infinite loss on any process raises FloatingPointError before the weights change."""
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    loss_sum, examples = 0.0, 0
    for _ in range(config.grad_accum):
        plan, rows = batches.next_batch()
        rows = rows[rank * config.batch_size : (rank + 1) * config.batch_size]  # this process's slice
        batch = {k: v.to(device) for k, v in encoder.pad(plan.encoded, rows).items()}
        frame = plan.rows.iloc[rows]
        task_ids = torch.as_tensor(frame["task_id"].to_numpy(dtype=np.int64), device=device)
        labels = torch.as_tensor(frame["label"].to_numpy(dtype=np.float32), device=device)
        weights = torch.as_tensor(frame["weight"].to_numpy(dtype=np.float32), device=device)
        targets = None if teacher is None else torch.as_tensor(teacher.targets(frame), device=device)
        with accelerator.accumulate(model), accelerator.autocast():
            logits = model(**batch, task_ids=task_ids).float()
            loss = relevance_loss(logits, labels, weights, targets, alpha=config.distill_alpha,
                                  temperature=config.distill_temperature)
            finite = accelerator.reduce(torch.isfinite(loss).float().reshape(1), "min") if world > 1 \
                else torch.isfinite(loss)
            if not bool(finite):
                raise FloatingPointError(f"loss became {loss.item()}")
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.item()
        examples += len(rows) * world
    return loss_sum, examples


@dataclass
class Run:
    """Everything the loop works with, built once by :func:`set_up`."""

    shards: Path
    output: Path
    config: TrainConfig
    manifest: dict[str, Any]
    digest: str
    names: list[str]
    accelerator: Any
    tokenizer: Any
    encoder: PairEncoder
    batches: TaskBalancedBatches
    plan: Schedule
    model: Any
    optimizer: Any
    scheduler: Any
    trainable: list[torch.nn.Parameter]
    state: TrainState
    store: Checkpoints
    valid_frame: Any
    teacher: Teacher | None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass
class Meter:
    """Examples and seconds of the training steps (examples/s counts them only) and the loss since
    the last logged step."""

    examples: int = 0
    seconds: float = 0.0
    loss_sum: float = 0.0
    loss_count: int = 0


def set_up(shards: Path, output: Path, config: TrainConfig, checkpoints: str | Path | None) -> Run:
    """Data, model, optimizer, schedule, accelerator and checkpoint store of a run."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    manifest = read_manifest(shards)
    digest = manifest_digest(shards)
    names, ids = training_tasks(manifest, config)
    files_by_task = train_files(shards, names, ids)
    accelerator = make_accelerator(config)
    world = accelerator.num_processes
    teacher = None
    if config.teacher:  # the main process scores (or reads the cache), then the others read the cache
        for turn in (True, False):
            if accelerator.is_main_process == turn:
                teacher = load_teacher(config.teacher, shards, names, ids, digest,
                                       Path(config.teacher_cache).expanduser(), registry=config.mlflow)
            accelerator.wait_for_everyone()
    set_seed(config.seed)
    tokenizer = tokenizer_of(config)
    model = build_model(config, len(names))
    encoder = PairEncoder(tokenizer, config.max_length, segment=config.segment_in_text)
    batches = TaskBalancedBatches(
        files_by_task, len(names), MODEL_COLUMNS, batch_size=config.batch_size * world, encode=encoder.encode,
        temperature=config.task_sampling_temperature, seed=config.seed, bucket_factor=config.bucket_factor,
    )
    plan = Schedule.of(config, batches.total_rows, world)
    groups = parameter_groups(model, config)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_schedule, optimizer,
                              num_warmup_steps=int(config.warmup_ratio * plan.total_steps),
                              num_training_steps=plan.total_steps)
    state = TrainState(identity={**config.training_identity(), "manifest_digest": digest,
                                 "backbone_fingerprint": model.base_fingerprint,
                                 **({"teacher_digest": teacher.digest} if teacher else {})})
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler, batches)
    accelerator.register_save_state_pre_hook(keep_trained_weights)
    valid_frame = validation_frame(shards, names, ids, config.valid_max_rows, config.seed)
    store = Checkpoints(Path(checkpoints) if checkpoints else default_checkpoint_dir(output), config.keep_checkpoints)
    return Run(shards, output, config, manifest, digest, names, accelerator, tokenizer, encoder, batches, plan, model,
               optimizer, scheduler, [p for group in groups for p in group["params"]], state, store, valid_frame,
               teacher)


def resume_or_start(run: Run) -> tuple[Path | None, bool]:
    """Resumes from the last checkpoint of the same config and data, or clears what an earlier run
    left; returns the checkpoint resumed from and whether that run had already finished."""
    if run.main:
        run.output.mkdir(parents=True, exist_ok=True)
    run.accelerator.wait_for_everyone()
    resumed = run.store.resume(run.accelerator, run.model, run.state, DEFAULTS) if run.config.resume else None
    if resumed is not None:
        log("train", f"resumed from {resumed} at step {run.state.step}")
    elif run.main:  # a fresh run: nothing of an earlier run may pass for this one's result
        run.store.clear()
        clear_model_dir(run.output)
    state, patience = run.state, run.config.early_stopping_patience
    finished = resumed is not None and (state.step >= run.plan.total_steps or state.stopped_early(patience))
    if finished:
        log("train", f"nothing left to train: {resumed} is the end of a finished run (step {state.step})")
    return resumed, finished


def open_tracker(run: Run, resumed: Path | None) -> TrainTracker | None:
    """The run's MLflow record (main process only), started unless resumed; logs what will be trained."""
    config, world = run.config, run.accelerator.num_processes
    tracker = TrainTracker(run.state.run_id, train_run_name(config)) if config.mlflow and run.main else None
    mix = {run.names[t]: round(p, 6) for t, p in run.batches.effective_mix().items() if p > 0}
    if tracker is not None:
        run.state.run_id = tracker.run_id
        if resumed is None:
            tracker.start(config, {"manifest_digest": run.digest, "shards": str(run.shards.resolve()),
                                   "method": config.method, "backbone": config.backbone, "processes": str(world),
                                   "mixed_precision": run.accelerator.mixed_precision,
                                   **(run.teacher.tags() if run.teacher else {})},
                          mix, dict(zip(run.names, run.batches.counts, strict=True)))
    if run.main:
        blocks = f" (its first {config.backbone_layers} blocks)" if config.backbone_layers else ""
        taught = (f"; distilled from {run.teacher.uri} (alpha {config.distill_alpha}, temperature "
                  f"{config.distill_temperature})" if run.teacher else "")
        log("train", f"{config.method} on {config.backbone}{blocks}: {len(run.names)} tasks, {run.batches.total_rows} "
            f"train rows, {run.plan.total_steps} steps of {run.plan.global_batch} examples ({world} process(es), "
            f"precision {run.accelerator.mixed_precision}){taught}; checkpoints in {run.store.directory}; task mix: "
            + ", ".join(f"{t} {p:.3f}" for t, p in mix.items()))
    return tracker


def train_run_name(config: TrainConfig) -> str:
    """``train-<method>[-<N>blocks][-student]-<date>``: what the runs list shows of a training run."""
    blocks = f"-{config.backbone_layers}blocks" if config.backbone_layers else ""
    return f"train-{config.method}{blocks}{'-student' if config.teacher else ''}-{datetime.now(UTC).date()}"


def optimizer_step(run: Run, meter: Meter, step: int) -> dict[str, float]:
    """One optimizer step and its schedule step; returns the running loss, lr and examples/s."""
    started = time.perf_counter()
    try:
        loss, examples = train_step(run.model, run.batches, run.encoder, run.optimizer, run.accelerator, run.config,
                                    run.trainable, run.teacher)
    except FloatingPointError as exc:
        best = run.output if run.state.best_step is not None else "none"
        raise TrainingDiverged(f"{exc} at step {step}: stopped; last good checkpoint "
                               f"{run.store.latest() or 'none'}, best model so far in {best}") from None
    run.scheduler.step()
    meter.seconds += time.perf_counter() - started
    meter.examples += examples
    meter.loss_sum, meter.loss_count = meter.loss_sum + loss, meter.loss_count + run.config.grad_accum
    return {"loss": meter.loss_sum / meter.loss_count, "lr": run.scheduler.get_last_lr()[0],
            "examples_per_s": meter.examples / max(1e-9, meter.seconds)}


def validate_and_keep_best(run: Run, tracker: TrainTracker | None, step: int) -> None:
    """Per-task validation AUC; a better macro AUC writes the model directory."""
    valid = validate(run.model, run.encoder, run.valid_frame, run.names, run.accelerator, run.config.batch_size * 4)
    improved = run.state.record(valid, step)
    if not run.main:
        return
    if improved:
        save_artifact(run.accelerator.unwrap_model(run.model), run.output, run.tokenizer, run.manifest, run.digest,
                      run.config, run.names, step, valid, train_rows=run.batches.total_rows, teacher=run.teacher)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in valid.items() if v is not None)
    log("train", f"step {step}: valid roc_auc {shown or 'undefined'}" + (" (best)" if improved else ""))
    if tracker is not None:
        tracker.log_valid(valid, step)


def finish(run: Run, tracker: TrainTracker | None, finished_before: bool, meter: Meter) -> TrainResult:
    """Calibration of the best model, its registration, and the result."""
    config, state = run.config, run.state
    if run.main and config.calibration != "none" and state.best_step is not None and len(run.valid_frame):
        calibrators = calibrate_artifact(run.output, run.valid_frame, run.names, config.calibration)
        fitted = ", ".join(calibrators) or "no task"
        log("train", f"{config.calibration} calibration fitted on the valid split for: {fitted}")
    run.accelerator.wait_for_everyone()
    version = None
    if tracker is not None:
        version = tracker.finish(run.output, finished_before=finished_before,
                                 best=(state.best_macro_auc, state.best_step),
                                 example=input_example(run.valid_frame, run.names), register=config.register,
                                 version_tags=run.teacher.tags() if run.teacher else None)
    return TrainResult(output=run.output, steps=state.step, best_macro_auc=state.best_macro_auc,
                       examples_per_second=meter.examples / max(1e-9, meter.seconds) if meter.examples else None,
                       valid=state.valid, run_id=state.run_id, model_version=version)


def train(shards: str | Path, output: str | Path, config: TrainConfig, *, checkpoints: str | Path | None = None,
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """The whole stage: the best model to ``output``, checkpoints to ``checkpoints`` (default
    ``<output>.checkpoints``). ``on_step(step)`` is called after every optimizer step (tests use it
    to interrupt a run)."""
    run = set_up(Path(shards), Path(output), config, checkpoints)
    resumed, finished = resume_or_start(run)
    tracker = open_tracker(run, resumed)
    state, plan, patience = run.state, run.plan, config.early_stopping_patience
    progress = Progress("train", plan.total_steps, initial=state.step, every=config.log_every, enabled=run.main)
    meter = Meter()
    run.model.train()
    try:
        for step in range(plan.total_steps + 1 if finished else state.step + 1, plan.total_steps + 1):
            last = step == plan.total_steps
            # forward, backward, update
            stats = optimizer_step(run, meter, step)
            progress.update(1, stats)
            if step % config.log_every == 0 or last:
                if tracker is not None:
                    tracker.log_train(stats, step)
                meter.loss_sum, meter.loss_count = 0.0, 0
            # validate; the best model so far goes to the model directory
            if step % plan.eval_every == 0 or last:
                validate_and_keep_best(run, tracker, step)
            # checkpoint, and stop early when validation stopped improving
            stop = state.stopped_early(patience)
            if step % plan.checkpoint_every == 0 or last or stop:
                run.store.save(run.accelerator, state, step)
            state.step = step
            if on_step is not None:
                on_step(step)
            if stop:
                log("train", f"early stop at step {step}: no better macro AUC in {patience} evaluations")
                break
    except BaseException:
        if tracker is not None:
            tracker.fail(interrupted=sys.exc_info()[0] is KeyboardInterrupt)
        raise
    finally:
        progress.close()
    return finish(run, tracker, finished, meter)
