"""Quality benchmark: does MTL-LoRA beat its peers per business segment? (`make bench-quality`)

On one set of prepared shards (synthetic logs with segment-dependent relevance rules: 10 tasks, the
smallest well under 1/20 of the largest), trains every method on all-MiniLM-L6-v2 at matched
trainable-parameter budgets (ranks chosen so each is within ±15% of mtl_lora's count where integer
ranks allow), plus lora with the segment written into the input text and full fine-tuning as a
reference, for each seed; scores the test split and reports macro AUC (mean ± std over seeds),
per-task AUC, trainable parameters, train time and scoring throughput. Every run is logged to one
MLflow experiment (ads-relevance-quality) with its test metrics.

Also written to --workdir: results.json (all runs, updated after each), table.md, gain_vs_size.png
(AUC gain of mtl_lora over lora against training rows per task) and mtl_structure.json (the learned
softmax(w_t/τ) mixing per task and the task-by-task cosine similarity of Λ_t, seed 0).

Nothing is tuned per method: adapters use lr 5e-4 (the training default), full fine-tuning 5e-5.
Defaults fit a 2-core CPU in well under 90 minutes. On a GPU run it larger, e.g.
`--rows 2000000 --steps 3000 --batch-size 64 --max-length 128`.

`python -m benchmarks.quality_diagnosis` then checks why the methods differ (headroom, segment cues
in the text, AUC per relation of query and ad, the learned task structure).

Run: python -m benchmarks.quality [--rows 200000] [--steps 200] [--seeds 0,1,2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REFERENCE = {"method": "mtl_lora", "rank": 8, "num_up": 3}
VARIANTS = ("lora", "lora_segment", "task_lora", "multi_lora", "moe_lora", "mtl_lora", "full")
BUDGET_TOLERANCE = 0.15


def log(message: str) -> None:
    print(f"bench-quality: {message}", file=sys.stderr, flush=True)


def make_shards(workdir: Path, rows: int) -> Path:
    from features.task_map import load_task_map
    from pipelines.prepare import PrepareConfig, run_prepare
    from pipelines.spark import build_session
    from pipelines.synth import synth_logs, write_logs

    shards = workdir / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    spark = build_session("adsrel-bench-quality", "local[2]", {"spark.ui.enabled": "false"})
    write_logs(synth_logs(spark, rows, 0, 0.03), str(workdir / "raw"))
    run_prepare(spark, [str(workdir / "raw")], str(shards), load_task_map("configs/tasks.yaml"), PrepareConfig())
    spark.stop()
    return shards


def strip_market_cues(shards: Path, out: Path) -> Path:
    """A copy of ``shards`` whose ad text no longer names the market: every display URL on .com,
    every price in $. synth writes the market only there, so afterwards task identity carries what
    the text cannot tell (the diagnosis found the text gives the market away for 97% of rows)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features.shards import MANIFEST

    if (out / MANIFEST).is_file():
        return out
    for path in sorted((shards / "shards").rglob("*.parquet")):
        table = pq.ParquetFile(path).read()
        stripped = {
            "display_url": pc.replace_substring_regex(table["display_url"], r"\.(co\.uk|com\.au|in|ca)(/|$)",
                                                      r".com\2"),
            "ad_description": pc.replace_substring_regex(table["ad_description"], r"C\$|A\$|£|₹", "$"),
        }
        for name, column in stripped.items():
            table = table.set_column(table.schema.get_field_index(name), name, column)
        target = out / path.relative_to(shards)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target)
    manifest = json.loads((shards / MANIFEST).read_text())
    manifest["derived"] = {"from": str(shards), "by": "benchmarks.quality --market-cues strip"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def matched_ranks(num_tasks: int) -> tuple[dict[str, int], dict[str, int], int]:
    """The rank of each adapter method whose trainable count is closest to mtl_lora's reference."""
    from models.backbone import DEFAULT_BACKBONE, load_backbone
    from models.budget import matched_rank, trainable_parameters
    from models.config import AdapterConfig

    backbone = load_backbone(DEFAULT_BACKBONE)
    target = trainable_parameters(backbone, AdapterConfig(num_tasks=num_tasks, **REFERENCE))
    ranks, counts = {"mtl_lora": REFERENCE["rank"]}, {"mtl_lora": target}
    for method in ("lora", "task_lora", "multi_lora", "moe_lora"):
        ranks[method], counts[method] = matched_rank(backbone, method, target, num_tasks=num_tasks)
    return ranks, counts, target


def variant_overrides(variant: str, ranks: dict[str, int], args: argparse.Namespace, seed: int) -> list[str]:
    method = "lora" if variant == "lora_segment" else variant
    settings = {"method": method, "seed": seed, "max_steps": args.steps, "batch_size": args.batch_size,
                "max_length": args.max_length, "eval_every": args.steps, "register": "false",
                "valid_max_rows": args.valid_rows, "log_every": 50, "lr": 5e-5 if method == "full" else 5e-4}
    if method != "full":
        settings["rank"] = ranks[method]
    if variant == "lora_segment":
        settings["segment_in_text"] = "true"
    return [f"{k}={v}" for k, v in settings.items()]


def sample_test_rows(shards: Path, rows_per_task: int):
    """The test rows every variant is scored on: at most ``rows_per_task`` per task, fixed draw."""
    import pandas as pd

    from features.shards import read_split

    test = read_split(shards, "test")
    return pd.concat([g.sample(min(len(g), rows_per_task), random_state=0) for _, g in test.groupby("task")])


def test_scores(model_dir: Path, frame) -> tuple[dict[str, float | None], float]:
    from evaluation.metrics import roc_auc
    from models.scoring import Scorer

    scorer = Scorer.load(model_dir)
    started = time.perf_counter()
    scores = scorer.predict(frame)
    rate = len(frame) / (time.perf_counter() - started)
    aucs: dict[str, float | None] = {}
    for task, rows in frame.assign(score=scores).groupby("task"):
        aucs[task] = roc_auc(rows["label"], rows["score"])
    return aucs, rate


def mtl_structure(model_dir: Path) -> dict:
    from evaluation.plots import lambda_similarity, mtl_layers
    from models.artifact import load_model

    model = load_model(model_dir)
    names = json.loads((model_dir / "adsrel_model.json").read_text())["task_names"]
    mixing = {name: layer.mixing_weights().tolist() for name, layer in mtl_layers(model).items()}
    return {"tasks": names, "mixing": mixing, "lambda_cosine": lambda_similarity(model).tolist()}


def table(results: list[dict], tasks: list[str]) -> str:
    lines = ["| variant | trainable params | seeds | macro AUC (mean ± std) | train s | score rows/s | "
             + " | ".join(tasks) + " |", "|---" * (6 + len(tasks)) + "|"]
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if not runs:
            continue
        macros = [r["macro"] for r in runs]
        spread = f"± {statistics.stdev(macros):.4f}" if len(macros) > 1 else "(one seed: no std)"
        per_task = [np.mean([r["test"][t] for r in runs if r["test"].get(t) is not None] or [np.nan]) for t in tasks]
        lines.append(f"| {variant} | {runs[0]['trainable']:,} | {len(runs)} | {np.mean(macros):.4f} {spread} | "
                     f"{np.mean([r['train_s'] for r in runs]):.0f} | {np.mean([r['score_rate'] for r in runs]):.0f} | "
                     + " | ".join(f"{a:.3f}" for a in per_task) + " |")
    return "\n".join(lines)


def gain_plot(results: list[dict], train_rows: dict[str, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean_auc(variant: str, task: str) -> float:
        values = [r["test"][task] for r in results if r["variant"] == variant and r["test"].get(task) is not None]
        return float(np.mean(values)) if values else float("nan")

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, rows in train_rows.items():
        gain = 100 * (mean_auc("mtl_lora", task) - mean_auc("lora", task))
        ax.scatter(rows, gain)
        ax.annotate(task, (rows, gain), fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training rows of the task")
    ax.set_ylabel("AUC gain of mtl_lora over lora (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@contextlib.contextmanager
def shared_lock(path: Path | None):
    """Hold a shared lock on ``path`` during one run, so an exclusive benchmark on a shared machine
    gets the machine between runs."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic raw log rows")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--valid-rows", type=int, default=200, help="validation rows per task (best-step choice)")
    parser.add_argument("--test-rows", type=int, default=800, help="test rows per task at most")
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--market-cues", choices=("keep", "strip"), default="keep",
                        help="strip: train and test on a copy of the shards without the market's domain and "
                             "currency in the ad text (a data ablation; see benchmarks.quality_diagnosis)")
    parser.add_argument("--lock", type=Path, help="hold a shared lock on this file during each run")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write table.md and gain_vs_size.png from the runs in results.json")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report(args.workdir)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{args.workdir.resolve()}/mlflow.db")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "ads-relevance-quality")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from mlflow import MlflowClient

    from features.shards import read_manifest, task_names
    from pipelines.train import train
    from pipelines.train_config import load_train_config

    started = time.perf_counter()
    with shared_lock(args.lock):
        shards = make_shards(args.workdir, args.rows)
        if args.market_cues == "strip":
            shards = strip_market_cues(shards, args.workdir / "shards-no-market-cues")
    manifest = read_manifest(shards)
    tasks = task_names(manifest)
    train_rows = {t: manifest["counts"]["train"].get(t, {}).get("rows", 0) for t in tasks}
    log(f"shards ready ({time.perf_counter() - started:.0f}s): train rows per task {train_rows}")
    test = sample_test_rows(shards, args.test_rows)
    ranks, counts, target = matched_ranks(len(tasks))
    log(f"matched ranks {ranks}; trainable {counts} (mtl_lora reference {target:,})")
    for method, count in counts.items():
        if abs(count - target) > BUDGET_TOLERANCE * target:
            log(f"WARNING {method}: {count:,} trainable parameters is outside ±15% of {target:,} at integer ranks")

    results_path = args.workdir / "results.json"
    # A rerun with the same --workdir keeps the runs already measured (an interrupted benchmark resumes).
    saved = json.loads(results_path.read_text()) if results_path.exists() else {}
    if saved.get("market_cues", args.market_cues) != args.market_cues:
        log(f"{results_path} holds runs with --market-cues {saved['market_cues']}: use another --workdir")
        return 2
    results: list[dict] = saved.get("runs", [])
    done = {(r["variant"], r["seed"]) for r in results}
    client = MlflowClient()
    variants = args.variants.split(",")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in variants:
            out = args.workdir / "models" / f"{variant}-seed{seed}"
            if (variant, seed) in done:
                log(f"seed {seed} {variant}: already in {results_path}, kept")
                continue
            config = load_train_config(None, variant_overrides(variant, ranks, args, seed))
            with shared_lock(args.lock):
                t0 = time.perf_counter()
                result = train(shards, out, config)
                train_s = time.perf_counter() - t0
                aucs, rate = test_scores(out, test)
            defined = [v for v in aucs.values() if v is not None]
            macro = float(np.mean(defined))
            client.set_tag(result.run_id, "benchmark_variant", variant)
            for task, auc in aucs.items():
                if auc is not None:
                    client.log_metric(result.run_id, f"test/{task}/roc_auc", auc)
            client.log_metric(result.run_id, "test/macro/roc_auc", macro)
            trainable = json.loads((out / "adsrel_model.json").read_text())["trainable_parameters"]
            results.append({"variant": variant, "seed": seed, "macro": macro, "test": aucs, "train_s": train_s,
                            "score_rate": rate, "trainable": trainable, "run_id": result.run_id,
                            "examples_per_s": result.examples_per_second})
            results_path.write_text(json.dumps({"ranks": ranks, "train_rows": train_rows,
                                                "market_cues": args.market_cues, "runs": results}, indent=1))
            log(f"seed {seed} {variant}: test macro AUC {macro:.4f}, train {train_s:.0f}s, "
                f"total {(time.perf_counter() - started) / 60:.1f} min")
            if variant == "mtl_lora" and seed == 0:
                (args.workdir / "mtl_structure.json").write_text(json.dumps(mtl_structure(out)))
    report(args.workdir)
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min; results in {args.workdir}")
    return 0


def report(workdir: Path) -> int:
    """table.md and gain_vs_size.png from results.json (also after an interrupted run)."""
    saved = json.loads((workdir / "results.json").read_text())
    results, train_rows = saved["runs"], saved["train_rows"]
    markdown = table(results, list(train_rows))
    (workdir / "table.md").write_text(markdown + "\n")
    if {"mtl_lora", "lora"} <= {r["variant"] for r in results}:
        gain_plot(results, train_rows, workdir / "gain_vs_size.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
