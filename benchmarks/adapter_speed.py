"""Cost of MTL-LoRA against PEFT's LoRA and the frozen base model, measured side by side.

On all-MiniLM-L6-v2, batch 32, sequence length 48, 8 tasks, r=8, n=3, adapting query, key, value and
the dense layers:
- train step (forward + backward + AdamW) of mtl_lora vs PEFT LoRA (r=8, same targets), target <= 1.05x
- inference of mtl_lora on a mixed-task batch vs the frozen base, target <= 1.15x; merged <= 1.02x
- peak tensor memory of a train step vs PEFT LoRA, target <= 1.10x

Run: python -m benchmarks.adapter_speed [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from benchmarks.timing import interleaved_medians
from models.backbone import DEFAULT_BACKBONE, load_backbone
from models.config import DEFAULT_TARGETS, AdapterConfig
from models.injection import MultiTaskModel

BATCH, SEQ, TASKS, RANK, NUM_UP = 32, 48, 8, 8, 3


def make_batch(vocab_size: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(1000, vocab_size, (BATCH, SEQ), generator=gen),
        "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long),
    }


def make_train_step(model: nn.Module, batch: dict, **extra) -> callable:
    """One forward + backward + AdamW step; the loss is the same for every variant."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> None:
        hidden = model(**batch, **extra).last_hidden_state
        loss = hidden.float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def make_inference(model: nn.Module, batch: dict, **extra) -> callable:
    model.eval()

    def infer() -> None:
        with torch.inference_mode():
            model(**batch, **extra)

    return infer


def peak_step_memory(step: callable) -> int:
    """Peak bytes of CPU tensor memory allocated during one step, above what was live before it.

    Read off torch.profiler's allocation events (the CPU analogue of max_memory_allocated).
    """
    step()  # optimizer state exists before the measured step
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # Allocations are attributed to the op that made them (self_cpu_memory_usage avoids counting a
    # nested op twice); frees that no op claims appear as "[memory]" events.
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def resident_training_bytes(model: nn.Module) -> int:
    """Weights + gradients + AdamW moments of the trainable parameters, + frozen weights."""
    total = 0
    for p in model.parameters():
        size = p.numel() * p.element_size()
        total += size * (4 if p.requires_grad else 1)
    return total


TARGETS_BY_RATIO = {
    "train_mtl_vs_peft_lora": 1.05,
    "infer_mixed_vs_base": 1.15,
    "infer_merged_vs_base": 1.02,
    "memory_step_peak_mtl_vs_peft_lora": 1.10,
    "memory_total_mtl_vs_peft_lora": 1.10,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="measured steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args(argv)


def build_models(base: nn.Module) -> dict[str, nn.Module]:
    """Copies of ``base`` with MTL-LoRA, PEFT LoRA, adsrel's LoRA, and MTL-LoRA merged for one task;
    ``base`` itself is frozen afterwards."""
    targets = DEFAULT_TARGETS["bert"]
    models = {
        "mtl_lora": MultiTaskModel(copy.deepcopy(base),
                                   AdapterConfig(num_tasks=TASKS, rank=RANK, num_up=NUM_UP, alpha=16.0)),
        "peft_lora": get_peft_model(
            copy.deepcopy(base), LoraConfig(r=RANK, lora_alpha=16, lora_dropout=0.0, target_modules=targets)),
        "adsrel_lora": MultiTaskModel(copy.deepcopy(base), AdapterConfig(method="lora", num_tasks=TASKS, rank=RANK)),
    }
    merged = MultiTaskModel(copy.deepcopy(base), AdapterConfig(num_tasks=TASKS, rank=RANK, num_up=NUM_UP))
    with torch.no_grad():  # a trained-looking adapter, so merging really changes weights
        for p in merged.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    merged.merge(3)
    base.requires_grad_(False)
    return {**models, "mtl_lora_merged": merged}


def time_steps(models: dict[str, nn.Module], base: nn.Module, batch: dict, task_ids: torch.Tensor,
               args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of a train step and of an inference call per variant (each group interleaved)."""
    mtl = models["mtl_lora"]
    print("timing train steps ...", file=sys.stderr)
    steps = {"peft_lora": make_train_step(models["peft_lora"], batch),
             "mtl_lora": make_train_step(mtl, batch, task_ids=task_ids),
             "adsrel_lora": make_train_step(models["adsrel_lora"], batch)}
    train = interleaved_medians(steps, warmup=args.warmup, repeats=args.repeats)
    print("timing inference ...", file=sys.stderr)
    calls = {"base": make_inference(base, batch),
             "mtl_lora_mixed": make_inference(mtl, batch, task_ids=task_ids),
             "mtl_lora_merged": make_inference(models["mtl_lora_merged"], batch)}
    infer = interleaved_medians(calls, warmup=args.warmup, repeats=args.repeats * 2)
    return train, infer


def measure_memory(models: dict[str, nn.Module], batch: dict,
                   task_ids: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """Peak bytes of one train step, and that plus the resident training state, of PEFT LoRA and MTL-LoRA."""
    print("measuring memory ...", file=sys.stderr)
    step_peak = {
        "peft_lora": peak_step_memory(make_train_step(models["peft_lora"], batch)),
        "mtl_lora": peak_step_memory(make_train_step(models["mtl_lora"], batch, task_ids=task_ids)),
    }
    resident = {name: resident_training_bytes(models[name]) for name in ("peft_lora", "mtl_lora")}
    total = {k: step_peak[k] + resident[k] for k in step_peak}
    return step_peak, total


def collect_results(models: dict[str, nn.Module], train: dict[str, float], infer: dict[str, float],
                    step_peak: dict[str, int], total: dict[str, int]) -> dict:
    return {
        "train_step_s": train,
        "inference_s": infer,
        "params": {
            "mtl_lora": models["mtl_lora"].trainable_parameter_count(),
            "peft_lora": sum(p.numel() for p in models["peft_lora"].parameters() if p.requires_grad),
        },
        "step_peak_bytes": step_peak,
        "training_total_bytes": total,
        "ratios": {
            "train_mtl_vs_peft_lora": train["mtl_lora"] / train["peft_lora"],
            "train_adsrel_lora_vs_peft_lora": train["adsrel_lora"] / train["peft_lora"],
            "infer_mixed_vs_base": infer["mtl_lora_mixed"] / infer["base"],
            "infer_merged_vs_base": infer["mtl_lora_merged"] / infer["base"],
            "memory_step_peak_mtl_vs_peft_lora": step_peak["mtl_lora"] / step_peak["peft_lora"],
            "memory_total_mtl_vs_peft_lora": total["mtl_lora"] / total["peft_lora"],
        },
    }


def print_report(results: dict) -> None:
    """The ratios against their targets, then the timings, parameter counts and memory."""
    print(f"\n{'measure':<40}{'value':>12}{'target':>10}")
    for name, ratio in results["ratios"].items():
        target = TARGETS_BY_RATIO.get(name)
        flag = "" if target is None else ("  ok" if ratio <= target else "  MISSED")
        print(f"{name:<40}{ratio:>11.3f}x{'' if target is None else f'<= {target:.2f}':>10}{flag}")
    train, infer = results["train_step_s"], results["inference_s"]
    timings = {**{f"train {k}": v for k, v in train.items()}, **{f"infer {k}": v for k, v in infer.items()}}
    for name, secs in timings.items():
        print(f"{name:<40}{secs * 1000:>10.1f}ms")
    for name, count in results["params"].items():
        print(f"trainable params {name:<23}{count:>12,}")
    step_peak, total = results["step_peak_bytes"], results["training_total_bytes"]
    for name in step_peak:
        print(f"step peak / total MiB {name:<18}{step_peak[name] / 2**20:>8.1f} / {total[name] / 2**20:.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = load_backbone(DEFAULT_BACKBONE)
    batch = make_batch(base.config.vocab_size)
    task_ids = torch.arange(BATCH) % TASKS
    models = build_models(base)
    print(f"threads={torch.get_num_threads()} batch={BATCH} seq={SEQ} tasks={TASKS} r={RANK} n={NUM_UP}",
          file=sys.stderr)
    train, infer = time_steps(models, base, batch, task_ids, args)
    step_peak, total = measure_memory(models, batch, task_ids)
    results = collect_results(models, train, infer, step_peak, total)
    print_report(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
