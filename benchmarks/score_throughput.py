"""Batch-scoring throughput of `adsrel score` against a plain Hugging Face loop, in one run.

20,000 candidates from synthetic logs, given the length mix of real ad candidates (synth's ads all
have one description of 55-103 characters, so every pair is 34-68 tokens): a quarter without a
description (headline-only ads), half with one, a quarter with two (a long responsive ad), and one
query in ten twice as long; ``--length-mix synth`` keeps synth's own. The model: the default
backbone (all-MiniLM-L6-v2) with MTL-LoRA adapters for the 10 tasks of configs/tasks.yaml (adapter
weights perturbed, so that an unmerged update costs what a trained one does). Each variant runs in
a fresh process, round-robin over ``--repeats``:

- ``hf_baseline``: the same model, batches of 32 in input order padded to the longest, per-example
  task routing, unmerged (the loop one writes with transformers alone);
- ``adsrel_local``: `adsrel score --engine local`;
- ``adsrel_spark``: `adsrel score` on Spark local[2].

Reported: pairs/s (the whole run, model load included) and the ratio to the baseline (target >= 1.5);
achieved model FLOP/s (the forward passes' multiply-adds on the real tokens of every pair, over the
run's seconds) as a fraction of this machine's float32 matmul peak (a large torch.matmul, timed in
the same run; target >= 0.5); peak resident memory of the driver and of one Python worker.

Run: python -m benchmarks.score_throughput [--rows 20000] [--repeats 1] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO, TARGET_PEAK_FRACTION = 1.5, 0.5
BASELINE_BATCH = 32
VARIANTS = ("hf_baseline", "adsrel_local", "adsrel_spark")


def with_length_mix(frame, seed: int = 11):
    """Headline-only, one-description and two-description ads (1 : 2 : 1), one query in ten longer."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=len(frame), p=[0.25, 0.5, 0.25])
    other = rng.permutation(len(frame))
    descriptions = frame["ad_description"].to_numpy(dtype=object)
    frame = frame.assign(ad_description=np.where(kind == 0, None, np.where(
        kind == 2, descriptions + " " + descriptions[other], descriptions)))
    longer = rng.random(len(frame)) < 0.1
    queries = frame["query"].to_numpy(dtype=object)
    return frame.assign(query=np.where(longer, queries + " " + queries[rng.permutation(len(frame))], queries))


def make_inputs(workdir: Path, rows: int, length_mix: str) -> tuple[Path, Path]:
    """Candidates (the candidate columns of synthetic logs) and a MiniLM MTL-LoRA artifact."""
    candidates, model = workdir / f"candidates-{length_mix}", workdir / "model"
    if not (candidates / "part-0.parquet").exists():
        from pipelines.data.synth import synth_logs
        from pipelines.spark import build_session

        spark = build_session("adsrel-bench-score-inputs", "local[2]", {"spark.ui.enabled": "false"})
        columns = ["query", "ad_id", "ad_title", "ad_description", "display_url", "market", "vertical"]
        frame = synth_logs(spark, rows, seed=11, dirt=0.0).select(*columns).toPandas()
        spark.stop()
        candidates.mkdir(parents=True, exist_ok=True)
        (frame if length_mix == "synth" else with_length_mix(frame)).to_parquet(candidates / "part-0.parquet",
                                                                                  index=False)
    if not (model / "adsrel_model.json").exists():
        perturbed_model(model, "mtl_lora", rank=8, seed=0)
    return candidates, model


def perturbed_model(directory: Path, method: str, *, rank: int, seed: int) -> Path:
    """A MiniLM artifact with ``method`` adapters for the tasks of configs/tasks.yaml, their up-projections
    perturbed (an unmerged update then costs what a trained one does)."""
    import torch

    from features.task_map import load_task_map
    from models.artifact import save_model
    from models.backbone import DEFAULT_BACKBONE, load_tokenizer
    from models.config import AdapterConfig
    from models.relevance import RelevanceModel, RelevanceModelConfig

    task_map = load_task_map(ROOT / "configs" / "tasks.yaml")
    torch.manual_seed(seed)
    config = RelevanceModelConfig(backbone=DEFAULT_BACKBONE, head="per_task",
                                  adapter=AdapterConfig(method=method, num_tasks=len(task_map.tasks), rank=rank))
    net = RelevanceModel.from_config(config)
    with torch.no_grad():
        for name, tensor in net.trainable_state_dict().items():
            if "lora_B" in name:
                tensor.normal_(0.0, 0.01)
    return save_model(net, directory, tokenizer=load_tokenizer(DEFAULT_BACKBONE),
                      tasks=[t.as_dict() for t in task_map.tasks], unmapped=task_map.unmapped, max_length=128,
                      segment_in_text=False)


def matmul_peak(size: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the best of ``repeats`` size x size float32 matrix products (this machine's ceiling)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def accepted_pairs(candidates: Path, model: Path):
    """The candidates that adsrel scores (checked and normalised), with their token counts."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from features.candidates import check_candidates
    from models.scoring import Scorer

    scorer = Scorer.load(model)
    raw = ds.dataset(candidates).to_table()
    checked = check_candidates(raw, scorer.task_map)
    accepted = pc.is_null(checked["reason"])
    frame = checked.filter(accepted).to_pandas()
    lengths = [len(ids) for ids in scorer.encoder.encode(scorer.texts(frame))["input_ids"]]
    return raw.filter(accepted).to_pandas(), frame, lengths, scorer


def model_flops(lengths: list[int], config) -> float:
    """Multiply-adds x 2 of a BERT-style encoder over sequences of ``lengths`` real tokens."""
    d, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return float(sum(layers * (2 * t * (4 * d * d + 2 * d * inner) + 4 * t * t * d) for t in lengths))


def run_baseline(candidates: Path, model: Path) -> dict:
    """The plain loop: raw text in input order, batches of 32 padded to the longest, unmerged."""
    import numpy as np
    import torch

    from features.tokenize import pair_texts
    from models.artifact import load_model
    from models.backbone import load_tokenizer

    started = time.perf_counter()
    raw, _, _, scorer = accepted_pairs(candidates, model)
    net = load_model(model).eval()
    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    task_ids = scorer.task_ids(raw)
    loading = time.perf_counter() - started
    first, second = pair_texts(raw.fillna({"ad_description": "", "display_url": ""}))
    scores = np.empty(len(raw), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(raw), BASELINE_BATCH):
            end = start + BASELINE_BATCH
            batch = tokenizer(first[start:end], second[start:end], padding="longest", truncation="longest_first",
                              max_length=128, return_tensors="pt")
            ids = torch.from_numpy(task_ids[start:end])
            scores[start:end] = torch.sigmoid(net(**batch, task_ids=ids).float()).numpy()
    seconds = time.perf_counter() - started
    return {"pairs": len(raw), "seconds": seconds, "model_load_s": loading,
            "peak_memory_mib": {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}


def run_adsrel(candidates: Path, model: Path, out: Path, engine: str) -> dict:
    from pipelines.scoring.job import run_score

    summary = run_score(str(model), [str(candidates)], str(out), engine=engine,
                        master="local[2]" if engine == "spark" else None)
    memory = dict(summary["peak_memory_mib"])
    memory["driver"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pairs": summary["scored"], "seconds": summary["seconds"], "peak_memory_mib": memory}


def child(variant: str, workdir: Path, length_mix: str) -> dict:
    candidates, model = workdir / f"candidates-{length_mix}", workdir / "model"
    if variant == "hf_baseline":
        return run_baseline(candidates, model)
    return run_adsrel(candidates, model, workdir / f"out-{variant}", variant.removeprefix("adsrel_"))


def in_child(variant: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmarks.score_throughput", "--child", variant, "--workdir",
               str(args.workdir), "--length-mix", args.length_mix]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adsrel-bench-score"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--length-mix", choices=("realistic", "synth"), default="realistic")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure_variants(args: argparse.Namespace) -> tuple[dict[str, list[dict]], list[float]]:
    """Each variant in its own process, round-robin over --repeats, between two matmul peaks."""
    variants = [v for v in args.variants.split(",") if v]
    peaks = [matmul_peak()]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            runs[variant].append(in_child(variant, args))
            print(f"  {variant}: {runs[variant][-1]['pairs'] / runs[variant][-1]['seconds']:.1f} pairs/s",
                  file=sys.stderr)
    peaks.append(matmul_peak())
    return runs, peaks


def token_quantiles(lengths: list[int]) -> dict[str, float]:
    return dict(zip(("p5", "p25", "p50", "p75", "p95", "max"),
                    statistics.quantiles(lengths, n=20)[0:1] + statistics.quantiles(lengths, n=4)
                    + statistics.quantiles(lengths, n=20)[18:19] + [max(lengths)], strict=True))


def variant_figures(figures: dict, runs: dict[str, list[dict]], base: float | None) -> None:
    """Per variant into ``figures``: median pairs/s and seconds, ratio to the baseline, share of the
    matmul peak, peak memory; printed as a table."""
    flops, peak = figures["model_flops"], figures["matmul_peak_flops"]
    print(f"{'variant':<14} {'pairs/s':>9} {'vs baseline':>12} {'model GFLOP/s':>14} {'of peak':>8}  peak memory MiB")
    for variant, results in runs.items():
        rate = statistics.median(r["pairs"] / r["seconds"] for r in results)
        seconds = statistics.median(r["seconds"] for r in results)
        achieved = flops / seconds
        memory = results[-1]["peak_memory_mib"]
        figures["variants"][variant] = {"pairs_per_s": rate, "seconds": seconds, "ratio": rate / base if base else None,
                                        "model_flops_per_s": achieved, "peak_fraction": achieved / peak,
                                        "peak_memory_mib": memory, "runs": results}
        ratio = f"{rate / base:.2f}x" if base else "-"
        text = ", ".join(f"{k} {v:,.0f}" for k, v in memory.items())
        print(f"{variant:<14} {rate:9.1f} {ratio:>12} {achieved / 1e9:14.1f} {achieved / peak:8.2f}  {text}")


def target_checks(figures: dict, base: float | None) -> list[str]:
    checks = []
    for variant in ("adsrel_local", "adsrel_spark"):
        if variant in figures["variants"] and base:
            v = figures["variants"][variant]
            checks.append(f"{variant} {v['ratio']:.2f}x baseline (target >= {TARGET_RATIO}): "
                          f"{'OK' if v['ratio'] >= TARGET_RATIO else 'MISSED'}")
            checks.append(f"{variant} {v['peak_fraction']:.2f} of matmul peak (target >= {TARGET_PEAK_FRACTION}): "
                          f"{'OK' if v['peak_fraction'] >= TARGET_PEAK_FRACTION else 'MISSED'}")
    return checks


def report(args: argparse.Namespace, runs: dict[str, list[dict]], peaks: list[float], lengths: list[int],
           flops: float) -> dict:
    """The figures of the whole run, printed: the pairs' token lengths, the variants and the targets."""
    peak = max(peaks)
    quantiles = token_quantiles(lengths)
    figures: dict = {"rows": args.rows, "length_mix": args.length_mix, "pairs": len(lengths),
                     "mean_tokens": statistics.mean(lengths), "token_quantiles": quantiles,
                     "model_flops": flops, "matmul_peak_flops": peak, "matmul_peaks": peaks, "variants": {}}
    base = statistics.median(r["pairs"] / r["seconds"] for r in runs["hf_baseline"]) if "hf_baseline" in runs else None
    mix = ", ".join(f"{k} {v:.0f}" for k, v in quantiles.items())
    print(f"{len(lengths)} pairs scored of {args.rows} candidates ({args.length_mix} length mix), tokens per pair: "
          f"mean {figures['mean_tokens']:.1f}, {mix}; float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    variant_figures(figures, runs, base)
    print("\n".join(target_checks(figures, base)))
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.length_mix)))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    candidates, model = make_inputs(args.workdir, args.rows, args.length_mix)
    _, _, lengths, scorer = accepted_pairs(candidates, model)
    flops = model_flops(lengths, scorer.model.encoder.model.config)
    runs, peaks = measure_variants(args)
    figures = report(args, runs, peaks, lengths, flops)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
