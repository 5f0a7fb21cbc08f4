"""Gradient checkpointing on the CPU: a training step's time and peak memory with and without it.

A randomly initialised Llama-architecture backbone built in-process from a config (``--layers`` blocks
of ``--hidden``; nothing downloaded) with MTL-LoRA on every attention and MLP projection and a
per-task head, trained on random token batches of ``--batch`` x max_length with mixed tasks (AdamW,
forward + backward + step). Each variant (max_length x checkpointing) runs in a fresh process so its
peak resident memory is its own: the activation peak is the process's peak RSS over the steps minus
its RSS after a warm-up step on a tiny batch (model and optimizer state in memory); glibc's mmap
threshold is fixed so freed activations leave the resident set. Variants alternate, and
each is measured ``--repeats`` times: median step seconds and activation peak.

Target: checkpointing cuts the activation peak at 512 tokens at least 3x.

Run: python -m benchmarks.checkpointing [--lengths 128,512] [--repeats 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.figures import emit

TARGET_CUT = 3.0


def child(length: int, checkpointing: bool, args: argparse.Namespace) -> dict:
    import resource

    import torch
    from transformers import LlamaConfig, LlamaModel

    from models.config import AdapterConfig
    from models.relevance import RelevanceModel, RelevanceModelConfig

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    backbone = LlamaModel(LlamaConfig(vocab_size=1000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                      num_attention_heads=8, num_key_value_heads=4,
                                      intermediate_size=int(args.hidden * 2.75), max_position_embeddings=length,
                                      pad_token_id=0))
    model = RelevanceModel(backbone, RelevanceModelConfig(backbone="llama-random", head="per_task",
                                                          adapter=AdapterConfig(num_tasks=4, rank=8)))
    if checkpointing:
        model.encoder.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(1)

    def step(batch: int = args.batch, tokens: int = length) -> float:
        ids = torch.randint(1, 1000, (batch, tokens), generator=generator)
        mask = torch.ones_like(ids)
        tasks = torch.arange(batch) % 4
        started = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask, task_ids=tasks)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, (tasks % 2).float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    def rss_mib() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    step(batch=4, tokens=8)  # warm-up on a tiny batch: the optimizer's state exists, few activations were made
    baseline = rss_mib()
    seconds = [step() for _ in range(args.steps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"length": length, "checkpointing": checkpointing, "step_seconds": statistics.median(seconds),
            "activation_peak_mib": round(peak - baseline, 1), "baseline_rss_mib": round(baseline, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=lambda p: __import__("pathlib").Path(p))
    parser.add_argument("--child", nargs=2, metavar=("LENGTH", "CHECKPOINTING"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1] == "on", args)))
        return 0
    passed = [f"--{k}={getattr(args, k)}" for k in ("layers", "hidden", "batch", "steps", "threads")]
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for length in (int(x) for x in args.lengths.split(",")):
            for mode in ("off", "on"):
                out = subprocess.run([sys.executable, "-m", "benchmarks.checkpointing", *passed, "--child",
                                      str(length), mode], capture_output=True, text=True, check=True,
                                     env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
                runs.setdefault(f"{length}-{mode}", []).append(json.loads(out.stdout.splitlines()[-1]))
                print(f"bench-checkpointing: {length} tokens, checkpointing {mode}: {runs[f'{length}-{mode}'][-1]}",
                      file=sys.stderr, flush=True)
    figures: dict = {"model": f"Llama, {args.layers} blocks of {args.hidden}, MTL-LoRA rank 8, batch {args.batch}",
                     "variants": {}}
    for key, measured in runs.items():
        figures["variants"][key] = {
            "step_seconds": round(statistics.median(r["step_seconds"] for r in measured), 3),
            "activation_peak_mib": round(statistics.median(r["activation_peak_mib"] for r in measured), 1),
            "runs": measured}
    for length in (int(x) for x in args.lengths.split(",")):
        off, on = figures["variants"][f"{length}-off"], figures["variants"][f"{length}-on"]
        figures[f"{length}_tokens"] = {"memory_cut": round(off["activation_peak_mib"] / on["activation_peak_mib"], 2),
                                       "step_time_ratio": round(on["step_seconds"] / off["step_seconds"], 2)}
    figures["target_met"] = figures.get("512_tokens", {}).get("memory_cut", 0) >= TARGET_CUT
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
