"""Training throughput of `adsrel train` vs the standard Hugging Face stack (Trainer + PEFT LoRA), in one run.

Same prepared shards (synthetic logs through `adsrel synth` + `adsrel prepare`), same backbone
(all-MiniLM-L6-v2), same sequence length limit, batch size, number of steps, LoRA rank and target
modules, fp32 on CPU. Variants run round-robin (A B C, A B C, ...) and the median examples/s of each
is reported with the ratios against the baseline:

- adsrel train, method mtl_lora (per-task head) / HF Trainer + PEFT LoRA: target >= 1.0
- adsrel train, method lora / HF Trainer + PEFT LoRA: target >= 1.2

Timing: adsrel counts its training steps (data reading, sampling, tokenisation, forward, backward,
update); the baseline's `trainer.train()` wall time on a dataset tokenised beforehand (its usual
setup: tokenisation is not counted for it). Validation and checkpoints are not counted for either.

Run: python -m benchmarks.train_throughput [--rows 40000] [--steps 60] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"mtl_lora": 1.0, "lora": 1.2}
LORA_TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def make_shards(workdir: Path, rows: int) -> Path:
    raw, shards = workdir / "raw", workdir / "shards"
    cli = [sys.executable, "-m", "pipelines.cli"]
    subprocess.run([*cli, "synth", "--output", str(raw), "--rows", str(rows), "--seed", "0"], check=True)
    subprocess.run([*cli, "prepare", "--input", str(raw), "--task-map", "configs/tasks.yaml", "--output",
                    str(shards), "--master", "local[2]"], check=True)
    return shards


def adsrel_run(shards: Path, method: str, steps: int, batch_size: int, max_length: int, rank: int) -> float:
    from pipelines.training.config import load_train_config
    from pipelines.training.loop import train

    config = load_train_config(None, [f"method={method}", f"max_steps={steps}", f"batch_size={batch_size}",
                                      f"max_length={max_length}", f"rank={rank}", "mlflow=false",
                                      "valid_max_rows=1", f"eval_every={steps}", "log_every=1000000"])
    with tempfile.TemporaryDirectory() as out:
        return train(shards, out, config).examples_per_second


def hf_dataset(shards: Path, rows: int, max_length: int):
    from features.shards import read_split
    from features.tokenize import pair_texts
    from models.backbone import DEFAULT_BACKBONE, load_tokenizer

    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    frame = read_split(shards, "train").sample(frac=1.0, random_state=0).head(rows)
    first, second = pair_texts(frame)
    enc = tokenizer(first, second, truncation="longest_first", max_length=max_length)
    labels = frame["label"].astype("float32").tolist()
    data = [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
             "attention_mask": enc["attention_mask"][i], "labels": labels[i]} for i in range(len(labels))]
    return tokenizer, data


def hf_peft_run(tokenizer, data, steps: int, batch_size: int, rank: int) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    from models.backbone import DEFAULT_BACKBONE, resolve_backbone

    model = AutoModelForSequenceClassification.from_pretrained(resolve_backbone(DEFAULT_BACKBONE), num_labels=1)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=16, target_modules=LORA_TARGETS, task_type="SEQ_CLS"))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
                                 learning_rate=5e-4, warmup_steps=max(1, int(0.06 * steps)), save_strategy="no",
                                 report_to=[], logging_steps=10**6, disable_tqdm=True, use_cpu=True,
                                 dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        trainer.train()
        return steps * batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000, help="synthetic raw log rows (default 40000)")
    parser.add_argument("--shards", type=Path, help="existing prepared shards instead of synth + prepare")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    with tempfile.TemporaryDirectory(prefix="adsrel-train-bench-") as tmp:
        shards = args.shards or make_shards(Path(tmp), args.rows)
        tokenizer, data = hf_dataset(shards, args.steps * args.batch_size, args.max_length)
        variants = {
            "hf_trainer_peft_lora": lambda: hf_peft_run(tokenizer, data, args.steps, args.batch_size, args.rank),
            "adsrel_mtl_lora": lambda: adsrel_run(shards, "mtl_lora", args.steps, args.batch_size, args.max_length,
                                                  args.rank),
            "adsrel_lora": lambda: adsrel_run(shards, "lora", args.steps, args.batch_size, args.max_length,
                                              args.rank),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for name, run in variants.items():
                rates[name].append(run())
                print(f"repeat {repeat + 1}/{args.repeats} {name}: {rates[name][-1]:.1f} examples/s",
                      file=sys.stderr, flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["hf_trainer_peft_lora"]
    ratios = {m: medians[f"adsrel_{m}"] / base for m in TARGETS}
    print(f"\ntraining throughput, all-MiniLM-L6-v2, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.steps} steps, rank {args.rank}, torch threads {__import__('torch').get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"{'variant':<24}{'examples/s':>12}{'ratio':>8}{'target':>9}")
    print(f"{'hf_trainer_peft_lora':<24}{base:>12.1f}{1.0:>8.3f}{'':>9}")
    for method, target in TARGETS.items():
        ok = "ok" if ratios[method] >= target else "MISSED"
        print(f"{'adsrel_' + method:<24}{medians['adsrel_' + method]:>12.1f}{ratios[method]:>8.3f}"
              f"{'>= ' + str(target):>9} {ok}")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": medians, "ratios": ratios,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
