"""MTL-LoRA at LLM scale on a GPU: training tokens/s, model FLOP utilisation and peak memory of a
1B-parameter Llama against PEFT LoRA at the same rank, with and without gradient checkpointing.

A randomly initialised Llama-architecture model is built in-process from a config (``--size 1b``:
hidden 2048, 22 blocks, 32 heads, 4 KV heads, MLP 5632, about 1.1B parameters; nothing downloaded),
its weights frozen in float32 and every step run under bf16 autocast, as adsrel's training does with
``mixed_precision: auto``. Variants, each on its own copy of the model, timed round-robin in one process:
MTL-LoRA (adsrel's MultiTaskModel, 8 tasks mixed in every batch, num_up 3) and PEFT LoRA, rank
``--rank`` on the same projections (q, k, v, o, gate, up, down), each with checkpointing off and on
(MTL-LoRA: MultiTaskModel.enable_gradient_checkpointing; PEFT: the model's own, non-reentrant).
One step = forward + backward + AdamW on a batch of ``--batch`` x ``--length`` random tokens.

Model FLOP utilisation = model FLOPs per second / the bf16 peak, the peak being a large bf16 matmul
timed in the same run. Model FLOPs per token of a frozen-base step: 4 N (forward and the backward of
the activations; no weight gradients for the frozen N) + 12 L d T for attention (PaLM's count), T the
sequence length; recomputation by checkpointing is not counted (it is overhead, not model work).
Peak memory: the most allocated during a step above what was allocated before it (activations,
gradients and the transient buffers), per variant, after a warm-up step that created AdamW's state.

Targets (issue 34): MTL-LoRA's step within 1.1x of PEFT LoRA's, model FLOP utilisation >= 0.35.
On a machine without a GPU it runs in float32 on the CPU, at ``--size tiny`` unless told otherwise: a
smoke test whose figures say nothing about a GPU. Not in ``make bench`` (CI and this project's
machine have no GPU); on a GPU it is meant to take a few minutes, not yet run on one. Not here:
``adsrel score`` in bf16 on a GPU (the batch scorer runs on the CPU only).

Run: python -m benchmarks.gpu_scale [--size 1b|tiny] [--batch 16] [--length 512] [--rank 16] [--steps 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from benchmarks.figures import emit
from benchmarks.timing import interleaved_medians
from models.config import DEFAULT_TARGETS, AdapterConfig
from models.injection import MultiTaskModel

SIZES = {  # LlamaConfig keys
    "1b": {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
           "intermediate_size": 5632, "vocab_size": 32000},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 176, "vocab_size": 1000},
}
TASKS, NUM_UP = 8, 3
TARGET_STEP_RATIO, TARGET_MFU = 1.1, 0.35


def log(message: str) -> None:
    print(f"bench-gpu-scale: {message}", file=sys.stderr, flush=True)


def build_base(size: str, length: int, device: torch.device) -> nn.Module:
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(**SIZES[size], max_position_embeddings=length, pad_token_id=0)
    with device:
        base = LlamaModel(config)
    base.config.use_cache = False
    return base.requires_grad_(False)


def build_variants(base: nn.Module, rank: int) -> dict[str, nn.Module]:
    from peft import LoraConfig, get_peft_model

    targets = DEFAULT_TARGETS["llama"]
    variants = {}
    for checkpointing in (False, True):
        suffix = "-checkpointing" if checkpointing else ""
        mtl = MultiTaskModel(copy.deepcopy(base), AdapterConfig(num_tasks=TASKS, rank=rank, num_up=NUM_UP,
                                                                alpha=2.0 * rank, target_modules=targets))
        peft = get_peft_model(copy.deepcopy(base), LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                              target_modules=targets))
        if checkpointing:
            mtl.enable_gradient_checkpointing()
            peft.base_model.model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
            peft.base_model.model.enable_input_require_grads()
        variants[f"mtl_lora{suffix}"], variants[f"peft_lora{suffix}"] = mtl.train(), peft.train()
    return variants


def train_step(model: nn.Module, batch: dict, task_ids: torch.Tensor | None,
               device: torch.device) -> Callable[[], None]:
    """One forward + backward + AdamW step under bf16 autocast on a GPU; the same loss for every variant."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    extra = {"task_ids": task_ids} if task_ids is not None else {}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            hidden = model(**batch, **extra).last_hidden_state
            loss = hidden.float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def step_memory(step: Callable[[], None], device: torch.device) -> float | None:
    """GiB allocated at the peak of one step above what was allocated before it (GPU only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    return round((torch.cuda.max_memory_allocated() - before) / 2**30, 2)


def matmul_peak(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    """FLOP/s of an n x n x n matmul in bf16 (GPU) or float32 (CPU): the peak utilisation is taken against."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))

    def matmul() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    seconds = interleaved_medians({"matmul": matmul}, warmup=3, repeats=repeats)["matmul"]
    return 2 * n**3 / seconds


def model_flops_per_token(base: nn.Module, length: int) -> float:
    """4 N + 12 L d T: a frozen-base step's model FLOPs per token (see the module's docstring)."""
    config = base.config
    frozen = sum(p.numel() for name, p in base.named_parameters() if "embed_tokens" not in name)
    return 4 * frozen + 12 * config.num_hidden_layers * config.hidden_size * length


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="default: 1b on a GPU, tiny on the CPU")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.size = args.size or ("1b" if device.type == "cuda" else "tiny")  # 1b x 5 copies in float32: ~22 GiB
    started = time.perf_counter()
    log(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu (no GPU: a smoke test only)'}")
    peak = matmul_peak(device)
    base = build_base(args.size, args.length, device)
    parameters = sum(p.numel() for p in base.parameters())
    log(f"Llama {args.size}: {parameters / 1e9:.2f}B parameters; matmul peak {peak / 1e12:.1f} TFLOP/s")
    variants = build_variants(base, args.rank)
    generator = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(1, base.config.vocab_size, (args.batch, args.length), generator=generator),
             "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long)}
    batch = {k: v.to(device) for k, v in batch.items()}
    task_ids = (torch.arange(args.batch) % TASKS).to(device)  # every task in every batch
    steps = {name: train_step(model, batch, task_ids if name.startswith("mtl") else None, device)
             for name, model in variants.items()}
    memory = {}
    for name, step in steps.items():  # the warm-up creates AdamW's state; the next step is measured
        step()
        memory[name] = step_memory(step, device)
    log("timing the steps round-robin ...")
    seconds = interleaved_medians(steps, warmup=args.warmup, repeats=args.steps)
    tokens = args.batch * args.length
    flops = model_flops_per_token(base, args.length) * tokens
    figures = {
        "device": str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
        "model": f"Llama {args.size} ({parameters / 1e9:.2f}B), batch {args.batch} x {args.length}, rank {args.rank}",
        "matmul_peak_tflops": round(peak / 1e12, 3),
        "variants": {name: {"step_seconds": round(s, 4), "tokens_per_s": round(tokens / s),
                            "mfu": round(flops / s / peak, 4), "step_peak_memory_gib": memory[name]}
                     for name, s in seconds.items()},
        "mtl_vs_peft_step": round(seconds["mtl_lora"] / seconds["peft_lora"], 3),
        "checkpointing_memory_cut": {m: (round(memory[m] / memory[f"{m}-checkpointing"], 2) if memory[m] else None)
                                     for m in ("mtl_lora", "peft_lora")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    figures["targets_met"] = {"step_within_1.1x": figures["mtl_vs_peft_step"] <= TARGET_STEP_RATIO,
                              "mfu_0.35": figures["variants"]["mtl_lora"]["mfu"] >= TARGET_MFU}
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
