"""Tiny model artifacts of chosen quality in about a second, without a training loop: the per-task head
of an untrained tiny artifact is fitted by logistic regression on the frozen encoder's pooled train
features, then blended with a fixed random direction (``quality`` 1 = the fit, 0 = random), per task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from features.shards import read_split
from models.artifact import WEIGHTS_FILE
from models.scoring import Scorer
from tests.tiny_models import tiny_artifact


def pooled_features(model_dir: Path, frame) -> np.ndarray:
    scorer = Scorer.load(model_dir)
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(inputs[0].detach().clone())

    handle = scorer.model.head.register_forward_hook(hook)
    try:
        # one batch, in order, so rows of the capture match the frame's
        encoded = scorer.encoder.encode(frame)
        batch = scorer.encoder.pad(encoded, np.arange(len(frame)))
        with torch.inference_mode():
            scorer.model(**batch, task_ids=torch.from_numpy(scorer.task_ids(frame)))
    finally:
        handle.remove()
    return captured[0].float().numpy()


def fitted_artifact(directory: Path, shards: Path, tasks, quality: float | dict = 1.0, *, seed: int = 0,
                    method: str = "mtl_lora", backbone_seed: int = 0) -> Path:
    from sklearn.linear_model import LogisticRegression

    directory = Path(directory)
    tiny_artifact(directory, tasks, seed=backbone_seed, method=method)  # one backbone for all: the heads differ
    frame = read_split(shards, "train")
    frame = frame[frame["task"].isin(tasks)].reset_index(drop=True)
    features = pooled_features(directory, frame)
    tensors = load_file(str(directory / WEIGHTS_FILE))
    weight, bias = tensors["head.weight"].clone(), tensors["head.bias"].clone()
    rng = np.random.default_rng(seed)
    for task_id, task in enumerate(tasks):
        rows = (frame["task"] == task).to_numpy()
        fit = LogisticRegression(C=10.0, max_iter=2000).fit(features[rows], frame["label"].to_numpy()[rows])
        w = fit.coef_[0] / np.linalg.norm(fit.coef_[0])
        noise = rng.normal(size=w.shape)
        noise /= np.linalg.norm(noise)
        q = quality.get(task, 1.0) if isinstance(quality, dict) else quality
        blended = q * w + (1 - q) * noise
        scale = np.linalg.norm(fit.coef_[0])
        weight[task_id] = torch.from_numpy(blended * scale).to(weight.dtype)
        bias[task_id] = float(fit.intercept_[0]) * q
    tensors["head.weight"], tensors["head.bias"] = weight, bias
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    return directory
