"""`adsrel train`: one readable training loop (nanoGPT style) on Hugging Face Accelerate.

shards (pyarrow, streaming, task-balanced) -> RelevanceModel (frozen backbone + adapters + head)
-> AdamW with warmup + decay, gradient accumulation and clipping, mixed precision where the hardware
has it -> per-task validation AUC, best model by macro AUC -> model artifact in --output, MLflow run
and registered pyfunc. ``accelerate launch`` / ``torchrun`` run it data parallel with no change: every
process draws the same global batch and trains on its own slice of it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from features.sampling import TaskBalancedBatches
from features.tokenize import PairEncoder
from models.artifact import META_FILE, TOKENIZER_DIR, WEIGHTS_FILE, save_model
from models.backbone import load_backbone, load_tokenizer
from models.config import AdapterConfig
from models.relevance import RelevanceModel, RelevanceModelConfig, trained_names
from pipelines.errors import UserError
from pipelines.shards import MODEL_COLUMNS, manifest_digest, read_manifest, read_table, split_files, task_names
from pipelines.train_config import TrainConfig

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"
ROOT = Path(__file__).resolve().parent.parent


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


class Progress:
    """A tqdm bar on a terminal; plain log lines every ``every`` steps otherwise (CI, Airflow)."""

    def __init__(self, total: int, initial: int, every: int, enabled: bool) -> None:
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
        elif step % self.every == 0 or step == self.total:
            text = " ".join(f"{k} {v:.4g}" for k, v in stats.items())
            log(f"step {step}/{self.total} {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def log(message: str) -> None:
    print(f"adsrel train: {message}", file=sys.stderr, flush=True)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_model(config: TrainConfig, num_tasks: int) -> RelevanceModel:
    adapter = AdapterConfig(
        method=config.method, num_tasks=num_tasks, rank=config.rank, num_up=config.num_up,
        temperature=config.temperature, alpha=config.alpha, dropout=config.dropout,
        lambda_form=config.lambda_form, target_modules=config.target_modules,
    )
    model_config = RelevanceModelConfig(backbone=config.backbone, adapter=adapter, head=config.head,
                                        pooling=config.pooling, head_dropout=config.head_dropout)
    try:
        backbone = load_backbone(config.backbone)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise UserError(f"backbone: {exc}") from None
    return RelevanceModel(backbone, model_config)


def training_tasks(manifest: dict[str, Any], config: TrainConfig) -> tuple[list[str], list[int]]:
    """All task names of the manifest (the model's tasks) and the ids trained on."""
    names = task_names(manifest)
    if config.tasks is None:
        return names, list(range(len(names)))
    unknown = [t for t in config.tasks if t not in names]
    if unknown:
        raise UserError(f"config: tasks not in the manifest: {', '.join(unknown)} (manifest has {', '.join(names)})")
    return names, [names.index(t) for t in config.tasks]


def validation_frame(shards: Path, names: list[str], ids: list[int], max_rows: int, seed: int) -> pd.DataFrame:
    files = split_files(shards, "valid")
    frames = []
    for t in ids:
        if names[t] not in files:
            continue
        frame = read_table(files[names[t]], MODEL_COLUMNS).to_pandas()
        if len(frame) > max_rows:
            frame = frame.sample(n=max_rows, random_state=seed)
        frames.append(frame.assign(task_id=t))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MODEL_COLUMNS))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, None when the labels hold one class only."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


@torch.inference_mode()
def validate(model: torch.nn.Module, encoder: PairEncoder, frame: pd.DataFrame, names: list[str],
             accelerator: Any, batch_size: int) -> dict[str, float | None]:
    """Per-task ROC AUC on the valid frame (each process scores a slice; scores are gathered) + macro."""
    from accelerate.utils import gather_object

    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = np.arange(rank, len(frame), world)
    encoded = encoder.encode(frame.iloc[mine].reset_index(drop=True))
    task_ids = frame["task_id"].to_numpy(dtype=np.int64)[mine]
    order = np.argsort([len(x) for x in encoded["input_ids"]], kind="stable")
    scores = np.empty(len(mine), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = {k: v.to(accelerator.device) for k, v in encoder.pad(encoded, rows).items()}
        with accelerator.autocast():
            logits = model(**batch, task_ids=torch.from_numpy(task_ids[rows]).to(accelerator.device))
        scores[rows] = logits.float().cpu().numpy()
    pairs = list(zip(mine.tolist(), scores.tolist(), strict=True))
    if world > 1:
        pairs = gather_object(pairs)
    all_scores = np.empty(len(frame), dtype=np.float64)
    for index, score in pairs:
        all_scores[index] = score
    model.train()
    labels, tasks = frame["label"].to_numpy(), frame["task_id"].to_numpy()
    result: dict[str, float | None] = {}
    for t in sorted(set(tasks.tolist())):
        rows = tasks == t
        result[names[t]] = roc_auc(labels[rows], all_scores[rows])
    defined = [v for v in result.values() if v is not None]
    result["macro"] = float(np.mean(defined)) if defined else None
    return result


def save_artifact(model: RelevanceModel, output: Path, tokenizer: Any, manifest: dict, digest: str,
                  config: TrainConfig, names: list[str], step: int, valid: dict) -> None:
    """The model artifact at the root of --output (written beside, then moved over the old files)."""
    staging = Path(tempfile.mkdtemp(prefix=".artifact-", dir=output))
    save_model(model, staging, tokenizer=tokenizer, tasks=manifest["tasks"], unmapped=manifest.get("unmapped"),
               max_length=config.max_length, segment_in_text=config.segment_in_text, calibrators=None,
               data={"manifest_digest": digest}, train_config=config.to_dict(), step=step, valid=valid,
               task_names=names)
    for name in (WEIGHTS_FILE, TOKENIZER_DIR, META_FILE):  # metadata last: its presence means complete
        target = output / name
        if target.is_dir():
            shutil.rmtree(target)
        if (staging / name).exists():
            (staging / name).replace(target)
    shutil.rmtree(staging, ignore_errors=True)


def calibrate_artifact(output: Path, frame: pd.DataFrame, names: list[str], method: str) -> dict[str, Any]:
    """Fit per-task calibrators (evaluation.calibration) on the best model's scores of the valid frame
    and store them as ``calibrators`` in its adsrel_model.json, which the Scorer then applies."""
    from evaluation.calibration import fit_calibrators
    from models.scoring import Scorer

    scorer = Scorer.load(output)
    scorer.meta["calibrators"] = None  # fit on raw scores, even if an earlier run left calibrators
    probs = scorer.predict(frame)
    tasks = np.asarray(names, dtype=object)[frame["task_id"].to_numpy(dtype=np.int64)]
    calibrators = fit_calibrators(frame["label"].to_numpy(), probs, tasks, method)
    meta_path = output / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["calibrators"] = calibrators or None
    staged = meta_path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    staged.replace(meta_path)
    return calibrators


def latest_checkpoint(directory: Path) -> Path | None:
    done = sorted(p for p in directory.glob("step-*") if (p / TRAINER_STATE).is_file())
    return done[-1] if done else None


def keep_trained_weights(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
    """Accelerate save-state hook: a checkpoint keeps the trained parameters only.

    The frozen backbone is rebuilt from the config on resume (its fingerprint is part of the run's
    identity), so saving it made every checkpoint of all-MiniLM-L6-v2 about 95 MB instead of the
    few MB of adapters and heads.
    """
    for model, state in zip(models, weights, strict=False):  # sharded engines pass no weights
        trained = trained_names(model)
        for name in [k for k in state if k not in trained]:
            del state[name]


def load_checkpoint(accelerator, model: torch.nn.Module, directory: Path) -> None:
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


def stage_artifact(output: Path) -> Path:
    """A copy of the artifact files only (no checkpoints) to log to MLflow."""
    staging = Path(tempfile.mkdtemp(prefix="adsrel-model-"))
    for name in (META_FILE, WEIGHTS_FILE):
        shutil.copy2(output / name, staging / name)
    if (output / TOKENIZER_DIR).is_dir():
        shutil.copytree(output / TOKENIZER_DIR, staging / TOKENIZER_DIR)
    return staging


def flat_params(config: TrainConfig) -> dict[str, str]:
    return {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in config.to_dict().items()}


def train(shards: str | Path, output: str | Path, config: TrainConfig,
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """The whole stage. ``on_step(step)`` is called after every optimizer step (tests use it to
    interrupt a run)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    shards, output = Path(shards), Path(output)
    manifest = read_manifest(shards)
    digest = manifest_digest(shards)
    names, ids = training_tasks(manifest, config)
    train_files = split_files(shards, "train")
    files_by_task = {t: train_files[names[t]] for t in ids if names[t] in train_files}
    if not files_by_task:
        raise UserError(f"{shards} has no train rows for the tasks trained on")

    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Accelerate runs several CPU processes (gloo) only when told to use the CPU.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum, cpu=multi_cpu)
    main = accelerator.is_main_process
    world = accelerator.num_processes
    set_seed(config.seed)

    try:
        tokenizer = load_tokenizer(config.backbone)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"backbone {config.backbone!r}: cannot load its tokenizer: {reason}") from None
    model = build_model(config, len(names))
    encoder = PairEncoder(tokenizer, config.max_length, segment=config.segment_in_text)
    batches = TaskBalancedBatches(
        files_by_task, len(names), MODEL_COLUMNS, batch_size=config.batch_size * world, encode=encoder.encode,
        temperature=config.task_sampling_temperature, seed=config.seed, bucket_factor=config.bucket_factor,
    )
    global_batch = config.batch_size * world * config.grad_accum
    steps_per_epoch = max(1, math.ceil(batches.total_rows / global_batch))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    eval_every = config.eval_every or steps_per_epoch
    checkpoint_every = config.checkpoint_every or eval_every

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    backbone_fingerprint = model.base_fingerprint
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler, batches)
    accelerator.register_save_state_pre_hook(keep_trained_weights)

    valid_frame = validation_frame(shards, names, ids, config.valid_max_rows, config.seed)
    checkpoints = output / CHECKPOINTS
    state = {"step": 0, "best_macro_auc": None, "best_step": None, "stale_evals": 0, "run_id": None, "valid": {},
             "identity": {**config.training_identity(), "manifest_digest": digest,
                          "backbone_fingerprint": backbone_fingerprint}}
    if main:
        output.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    resume_from = latest_checkpoint(checkpoints) if config.resume else None
    if resume_from is not None:
        saved = json.loads((resume_from / TRAINER_STATE).read_text())
        if saved["identity"] != state["identity"]:
            differs = sorted(k for k in state["identity"] if saved["identity"].get(k) != state["identity"][k])
            raise UserError(f"{resume_from} was made with another config (differs in {', '.join(differs)}): "
                            "remove it or train with --set resume=false")
        load_checkpoint(accelerator, model, resume_from)
        state.update(saved)
        log(f"resumed from {resume_from} at step {state['step']}")
    elif main:  # a fresh run: nothing of an earlier run in --output may pass for this one's result
        shutil.rmtree(checkpoints, ignore_errors=True)
        for name in (META_FILE, WEIGHTS_FILE, TOKENIZER_DIR):
            target = output / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    # A finished run (last step, or stopped early) that is run again trains nothing more and logs nothing
    # again: it reports what the finished run found.
    patience = config.early_stopping_patience
    finished = resume_from is not None and (
        state["step"] >= total_steps or (patience > 0 and state["stale_evals"] >= patience))
    if finished:
        log(f"nothing left to train: {resume_from} is the end of a finished run (step {state['step']})")

    run = None
    if config.mlflow and main:
        import mlflow

        from pipelines.mlflow_model import set_experiment

        set_experiment()
        run = mlflow.start_run(run_id=state["run_id"]) if state["run_id"] else mlflow.start_run()
        state["run_id"] = run.info.run_id
        if resume_from is None:
            mlflow.log_params(flat_params(config))
            mlflow.set_tags({"git_commit": git_commit(), "manifest_digest": digest, "shards": str(shards.resolve()),
                             "method": config.method, "backbone": config.backbone, "stage": "train",
                             "processes": str(world), "mixed_precision": precision})
            mix = {names[t]: round(p, 6) for t, p in batches.effective_mix().items() if p > 0}
            mlflow.log_dict({"task_sampling_probabilities": mix, "train_rows": dict(zip(names, batches.counts,
                            strict=True))}, "task_mix.json")

    if main:
        mix = ", ".join(f"{names[t]} {p:.3f}" for t, p in batches.effective_mix().items() if p > 0)
        log(f"{config.method} on {config.backbone}: {len(names)} tasks, {batches.total_rows} train rows, "
            f"{total_steps} steps of {global_batch} examples ({world} process(es), precision {precision}); "
            f"task mix: {mix}")

    def checkpoint(step: int) -> None:
        target = checkpoints / f"step-{step:08d}"
        accelerator.save_state(str(target))
        if main:
            (target / TRAINER_STATE).write_text(json.dumps({**state, "step": step}, indent=1, default=str))
            kept = sorted(p for p in checkpoints.glob("step-*") if (p / TRAINER_STATE).is_file())
            for old in kept[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    progress = Progress(total_steps, state["step"], config.log_every, main)
    model.train()
    # examples/s counts the training steps only (data, forward, backward, update), not validation/checkpoints
    examples, train_seconds, loss_sum, loss_count = 0, 0.0, 0.0, 0
    stopped_early = False
    rank = accelerator.process_index
    try:
        for step in range(total_steps + 1 if finished else state["step"] + 1, total_steps + 1):
            step_started = time.perf_counter()
            for _ in range(config.grad_accum):
                plan, rows = batches.next_batch()
                rows = rows[rank * config.batch_size : (rank + 1) * config.batch_size]
                batch = {k: v.to(accelerator.device) for k, v in encoder.pad(plan.encoded, rows).items()}
                frame = plan.rows.iloc[rows]
                task_ids = torch.as_tensor(frame["task_id"].to_numpy(dtype=np.int64), device=accelerator.device)
                labels = torch.as_tensor(frame["label"].to_numpy(dtype=np.float32), device=accelerator.device)
                weights = torch.as_tensor(frame["weight"].to_numpy(dtype=np.float32), device=accelerator.device)
                with accelerator.accumulate(model), accelerator.autocast():
                    logits = model(**batch, task_ids=task_ids).float()
                    loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weights).mean()
                    finite = accelerator.reduce(torch.isfinite(loss).float().reshape(1), "min") if world > 1 \
                        else torch.isfinite(loss)
                    if not bool(finite):
                        last = latest_checkpoint(checkpoints)
                        raise TrainingDiverged(
                            f"loss became {loss.item()} at step {step}: stopped; last good checkpoint "
                            f"{last or 'none'}, best model so far in {output if state['best_step'] else 'none'}"
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.item()
                loss_count += 1
                examples += len(rows) * world
            scheduler.step()
            train_seconds += time.perf_counter() - step_started
            stats = {"loss": loss_sum / max(1, loss_count), "lr": scheduler.get_last_lr()[0],
                     "examples_per_s": examples / max(1e-9, train_seconds)}
            progress.update(step, stats)
            if step % config.log_every == 0 or step == total_steps:
                if run is not None:
                    import mlflow

                    mlflow.log_metrics({"train/loss": stats["loss"], "train/lr": stats["lr"],
                                        "train/examples_per_s": stats["examples_per_s"]}, step=step)
                loss_sum, loss_count = 0.0, 0
            if step % eval_every == 0 or step == total_steps:
                valid = validate(model, encoder, valid_frame, names, accelerator, config.batch_size * 4) \
                    if len(valid_frame) else {}
                state["valid"] = valid
                macro = valid.get("macro")
                improved = macro is not None and (state["best_macro_auc"] is None or macro > state["best_macro_auc"])
                if improved or (state["best_step"] is None and macro is None):
                    state.update(best_macro_auc=macro, best_step=step, stale_evals=0)
                    if main:
                        save_artifact(accelerator.unwrap_model(model), output, tokenizer, manifest, digest, config,
                                      names, step, valid)
                else:
                    state["stale_evals"] += 1
                if main:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in valid.items() if v is not None)
                    log(f"step {step}: valid roc_auc {shown or 'undefined'}" + (" (best)" if improved else ""))
                    if run is not None:
                        import mlflow

                        mlflow.log_metrics({f"valid/{k}/roc_auc": v for k, v in valid.items() if v is not None},
                                           step=step)
                stopped_early = patience > 0 and state["stale_evals"] >= patience
            if step % checkpoint_every == 0 or step == total_steps or stopped_early:
                checkpoint(step)
            state["step"] = step
            if on_step is not None:
                on_step(step)
            if stopped_early:
                log(f"early stop at step {step}: no better macro AUC in {config.early_stopping_patience} evaluations")
                break
    finally:
        progress.close()
        if run is not None and sys.exc_info()[0] is not None:
            import mlflow

            mlflow.end_run(status="KILLED" if sys.exc_info()[0] is KeyboardInterrupt else "FAILED")

    rate = examples / max(1e-9, train_seconds) if examples else None
    result = TrainResult(output=output, steps=state["step"], best_macro_auc=state["best_macro_auc"],
                         examples_per_second=rate, valid=state["valid"], run_id=state["run_id"])
    if main and config.calibration != "none" and state["best_step"] is not None and len(valid_frame):
        calibrators = calibrate_artifact(output, valid_frame, names, config.calibration)
        log(f"{config.calibration} calibration fitted on the valid split for: {', '.join(calibrators) or 'no task'}")
    accelerator.wait_for_everyone()
    if run is not None:
        import mlflow

        from pipelines.mlflow_model import log_model, logged_model

        # A finished run's model may be logged already: by the call that finished it, unless that one
        # failed after its last checkpoint.
        logged = logged_model(state["run_id"]) if finished else None
        if logged is not None:
            log(f"the model of run {state['run_id']} is logged already ({logged.model_uri}): not logged again")
            result.model_version = logged.version
        else:
            if state["best_macro_auc"] is not None:
                mlflow.log_metrics({"train/best_macro_roc_auc": state["best_macro_auc"],
                                    "train/best_step": float(state["best_step"])})
            staged = stage_artifact(output)
            try:
                example = None
                if len(valid_frame):  # a real row of a task this model knows, as the signature's example
                    example = valid_frame.head(1)[["query", "ad_title", "ad_description", "display_url"]].assign(
                        task=names[int(valid_frame["task_id"].iloc[0])])
                ref = log_model(staged, register=config.register, input_example=example)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            result.model_version = ref.version
        mlflow.end_run()
    return result
