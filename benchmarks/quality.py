"""Quality benchmark: does MTL-LoRA beat its peers per business segment? (`make bench-quality`)

On one set of prepared shards (synthetic logs with segment-dependent relevance rules: 10 tasks, the
smallest well under 1/20 of the largest; split 60/10/30 so the test split measures small segments),
every method trains on all-MiniLM-L6-v2 for ``--epochs`` of the training split at a matched
trainable-parameter budget (ranks within ±15% of mtl_lora's count where integer ranks allow):

1. tuning: each method gets the same number of trials over its own settings (:data:`TRIALS`), seed 0;
   the trial with the best valid macro ROC AUC (the training's own best step) is chosen. No choice
   is ever made on test.
2. seeds: the chosen setting again with the other ``--seeds``; the chosen trial is seed 0's run.
3. test: the final runs score the same test rows; macro AUC mean ± std over seeds (over every task,
   and over the tasks with the promotion gate's support in the test rows), per-task AUC,
   trainable parameters and train time go to table.md, with, for mtl_lora, how far Λ_t and the
   mixing softmax(w_t/τ) moved from their initialisation per task.

Every run is logged to one MLflow experiment (ads-relevance-quality). Written to --workdir:
results.json (every run, updated after each: a rerun resumes where it stopped), table.md,
gain_vs_size.png (AUC gain of mtl_lora over lora against training rows per task) and
mtl_structure.json (the chosen mtl_lora trial's learned mixing and Λ_t similarity).

The defaults are sized for about 1.5 hours on a 2-core CPU (25 runs of 2 epochs over ~3k training
rows); each run logs its pace and ETA. Methods run one after another, trials then seeds, so an
interrupted benchmark reports whole methods, and a rerun resumes where it stopped.
`python -m benchmarks.quality_diagnosis` then checks why the methods differ (headroom, segment cues
in the text, AUC per relation of query and ad, the learned task structure).

Run: python -m benchmarks.quality [--rows 7000] [--epochs 2] [--seeds 0,1,2] [--workdir DIR]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = {"method": "mtl_lora", "rank": 8, "num_up": 3}
VARIANTS = ("lora", "lora_segment", "task_lora", "multi_lora", "moe_lora", "mtl_lora", "full")
DEFAULT_VARIANTS = ("lora", "lora_segment", "multi_lora", "moe_lora", "mtl_lora")
BUDGET_TOLERANCE = 0.15
SPLIT = (0.6, 0.1, 0.3)  # train, valid, test

# Every adapter method gets three trials over its own settings, on one learning-rate grid. mtl_lora's
# also cover τ and a larger learning rate for Λ_t and w_t; its w_t starts random (kaiming): a uniform
# start with B^i = 0 never tells the up-projections apart (tests/test_mtl_lora.py), so it is not a trial.
LEARNING_RATES = [{"lr": 5e-4}, {"lr": 1e-3}, {"lr": 2e-3}]
TRIALS: dict[str, list[dict]] = {
    "lora": LEARNING_RATES, "lora_segment": LEARNING_RATES, "task_lora": LEARNING_RATES,
    "multi_lora": LEARNING_RATES, "moe_lora": LEARNING_RATES,
    "mtl_lora": [{"lr": 5e-4, "temperature": 1.0, "task_lr_scale": 10.0},
                 {"lr": 1e-3, "temperature": 0.5, "task_lr_scale": 5.0},
                 {"lr": 2e-3, "temperature": 0.1, "task_lr_scale": 2.0}],
    "full": [{"lr": 5e-5}],  # a reference, not a competitor: one trial
}


def log(message: str) -> None:
    print(f"bench-quality: {message}", file=sys.stderr, flush=True)


def make_shards(workdir: Path, rows: int, split: tuple[float, float, float] = SPLIT) -> Path:
    from features.task_map import load_task_map
    from pipelines.data.prepare import run_prepare
    from pipelines.data.prepare_config import PrepareConfig
    from pipelines.data.synth import synth_logs, write_logs
    from pipelines.spark import build_session

    shards = workdir / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    spark = build_session("adsrel-bench-quality", "local[2]", {"spark.ui.enabled": "false"})
    write_logs(synth_logs(spark, rows, 0, 0.03), str(workdir / "raw"))
    run_prepare(spark, [str(workdir / "raw")], str(shards), load_task_map("configs/tasks.yaml"),
                PrepareConfig(split_ratios=split))
    spark.stop()
    return shards


def strip_market_cues(shards: Path, out: Path) -> Path:
    """A copy of ``shards`` whose ad text no longer names the market: every display URL on .com,
    every price in $. synth writes the market only there, so afterwards task identity carries what
    the text cannot tell (the diagnosis found the text gives the market away)."""
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


def variant_overrides(variant: str, trial: dict, ranks: dict[str, int], args: argparse.Namespace,
                      seed: int) -> list[str]:
    """The training config of one run: the benchmark's budget, the method's rank and the trial's settings."""
    method = "lora" if variant == "lora_segment" else variant
    settings = {"method": method, "seed": seed, "epochs": args.epochs, "batch_size": args.batch_size,
                "max_length": args.max_length, "eval_every": 0, "register": "false",
                "valid_max_rows": args.valid_rows, "log_every": 50, **trial}
    if method != "full":
        settings["rank"] = ranks[method]
    if variant == "lora_segment":
        settings["segment_in_text"] = "true"
    return [f"{k}={v}" for k, v in settings.items()]


def run_plan(variants: list[str], seeds: list[int]) -> list[tuple[str, str, int | None, int]]:
    """(variant, phase, trial, seed) in order: method by method, its trials on the first seed and
    then its other seeds, so an interrupted benchmark has whole methods to report."""
    return [step for v in variants for step in
            [(v, "trial", k, seeds[0]) for k in range(len(TRIALS[v]))] + [(v, "seed", None, s) for s in seeds[1:]]]


def chosen_trial(runs: list[dict], variant: str) -> int | None:
    """The trial of ``variant`` with the best valid macro AUC (seed 0), once all its trials ran."""
    trials = {r["trial"]: r["valid_macro"] for r in runs if r["variant"] == variant and r["phase"] == "trial"}
    if len(trials) < len(TRIALS[variant]):
        return None
    return max(trials, key=lambda k: (trials[k] if trials[k] is not None else float("-inf"), -k))


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


def mtl_structure(model_dir: Path, config) -> dict:
    """What mtl_lora learned per task, against the same seed's initialisation (rebuilt exactly as
    training builds it): Λ_t shift ||Λ_t - I|| / ||I|| and the mixing's total-variation distance
    from its start, each averaged over layers; the mixing per layer and the Λ_t - I similarity."""
    from accelerate.utils import set_seed

    from evaluation.plots import lambda_shift, lambda_similarity, mixing_concentration, mtl_layers
    from models.scoring import Scorer
    from pipelines.training.loop import build_model

    scorer = Scorer.load(model_dir)
    trained, names = scorer.model, scorer.task_names
    set_seed(config.seed)
    start = mtl_layers(build_model(config, len(names)))
    layers = mtl_layers(trained)
    mixing = {name: layer.mixing_weights().detach().numpy() for name, layer in layers.items()}
    moved = np.mean([0.5 * np.abs(mixing[name] - start[name].mixing_weights().detach().numpy()).sum(-1)
                     for name in layers], axis=0)
    shift = np.mean([lambda_shift(layer) for layer in layers.values()], axis=0)
    concentration = {when: np.mean([mixing_concentration(layer) for layer in group.values()], axis=0)
                     for when, group in (("start", start), ("trained", layers))}
    per_task = {task: {"lambda_shift": float(shift[t]), "mixing_moved": float(moved[t]),
                       "concentration_start": float(concentration["start"][t]),
                       "concentration_trained": float(concentration["trained"][t])}
                for t, task in enumerate(names)}
    return {"tasks": names, "per_task": per_task, "mixing": {k: v.tolist() for k, v in mixing.items()},
            "lambda_cosine": lambda_similarity(trained).tolist()}


def final_runs(results: list[dict], variant: str | None = None) -> list[dict]:
    """The runs scored on test: each method's chosen trial (seed 0) and its other seeds."""
    return [r for r in results if "test" in r and (variant is None or r["variant"] == variant)]


def supported_tasks(test, policy=None) -> list[str]:
    """The tasks whose test rows give the gate's support (evaluation.gate: rows, positives, negatives):
    a tiny segment's AUC over a handful of rows is noise, reported but not averaged in."""
    from evaluation.gate import GatePolicy, too_few_rows

    policy = policy or GatePolicy()
    return [task for task, rows in test.groupby("task")
            if not too_few_rows(len(rows), int(rows["label"].sum()), int((rows["label"] == 0).sum()), policy)]


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} " + (f"± {statistics.stdev(values):.4f}" if len(values) > 1 else "(one seed)")


def table(results: list[dict], tasks: list[str], supported: list[str] | None = None) -> str:
    """Per method: macro AUC over every task and over the gate-supported ones, mean ± std over seeds."""
    supported = supported or tasks
    lines = ["| variant | chosen setting | trainable params | seeds | macro AUC (mean ± std) | "
             f"macro AUC, {len(supported)} supported tasks | train s | "
             + " | ".join(tasks) + " |", "|---" * (7 + len(tasks)) + "|"]
    for variant in VARIANTS:
        runs = final_runs(results, variant)
        if not runs:
            continue
        macros = [r["macro"] for r in runs]
        supported_macros = [float(np.mean([r["test"][t] for t in supported if r["test"].get(t) is not None]))
                            for r in runs]
        per_task = [np.mean([r["test"][t] for r in runs if r["test"].get(t) is not None] or [np.nan]) for t in tasks]
        setting = ", ".join(f"{k} {v}" for k, v in runs[0]["settings"].items())
        lines.append(f"| {variant} | {setting} | {runs[0]['trainable']:,} | {len(runs)} | {_spread(macros)} | "
                     f"{_spread(supported_macros)} | {np.mean([r['train_s'] for r in runs]):.0f} | "
                     + " | ".join(f"{a:.3f}" for a in per_task) + " |")
    return "\n".join(lines)


def trials_table(results: list[dict]) -> str:
    lines = ["| variant | trial | settings | valid macro AUC | train s |", "|---|---|---|---|---|"]
    for r in (r for r in results if r["phase"] == "trial"):
        valid = "undefined" if r["valid_macro"] is None else f"{r['valid_macro']:.4f}"
        lines.append(f"| {r['variant']} | {r['trial']} | {', '.join(f'{k} {v}' for k, v in r['settings'].items())} "
                     f"| {valid} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def movement_table(results: list[dict], tasks: list[str], train_rows: dict[str, int]) -> str:
    """Per task, how far mtl_lora's task-specific parameters moved, mean over its final runs."""
    runs = [r["structure"]["per_task"] for r in final_runs(results, "mtl_lora") if "structure" in r]
    if not runs:
        return ""
    lines = ["| task | train rows | Λ_t shift ‖Λ_t−I‖/‖I‖ | mixing moved (TV) | concentration start → trained |",
             "|---|---|---|---|---|"]
    for task in tasks:
        mean = {k: np.mean([run[task][k] for run in runs]) for k in runs[0][task]}
        lines.append(f"| {task} | {train_rows.get(task, 0):,} | {mean['lambda_shift']:.4f} | "
                     f"{mean['mixing_moved']:.4f} | {mean['concentration_start']:.3f} → "
                     f"{mean['concentration_trained']:.3f} |")
    return "\n".join(lines)


def gain_plot(results: list[dict], train_rows: dict[str, int], path: Path, supported: list[str] | None = None,
              test_rows: dict[str, int] | None = None) -> None:
    """Gain of mtl_lora over lora per task against its training rows; hollow: too few test rows for the gate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    def mean_auc(variant: str, task: str) -> float:
        values = [r["test"][task] for r in final_runs(results, variant) if r["test"].get(task) is not None]
        return float(np.mean(values)) if values else float("nan")

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, rows in train_rows.items():
        gain = 100 * (mean_auc("mtl_lora", task) - mean_auc("lora", task))
        solid = supported is None or task in supported
        ax.scatter(rows, gain, color="C0", facecolors="C0" if solid else "none")
        note = f" ({(test_rows or {}).get(task, '?')} test rows: unsupported)" if not solid else ""
        ax.annotate(task + note, (rows, gain), fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7_000, help="synthetic raw log rows")
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs of the training split, every run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2", help="the first one tunes")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--valid-rows", type=int, default=500, help="validation rows per task (the choices)")
    parser.add_argument("--test-rows", type=int, default=2000, help="test rows per task at most")
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--market-cues", choices=("keep", "strip"), default="keep",
                        help="strip: train and test on a copy of the shards without the market's domain and "
                             "currency in the ad text (a data ablation; see benchmarks.quality_diagnosis)")
    parser.add_argument("--lock", type=Path, help="hold a shared lock on this file during each run")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write table.md and gain_vs_size.png from the runs in results.json")
    return parser.parse_args(argv)


def set_environment(workdir: Path) -> None:
    """MLflow into a SQLite store under ``workdir``, one experiment, quiet transformers (unless set already)."""
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir.resolve()}/mlflow.db")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "ads-relevance-quality")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_budget(args: argparse.Namespace) -> dict:
    """What the runs' figures depend on: results.json is reused only under the same budget."""
    return {"rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size, "max_length": args.max_length,
            "valid_rows": args.valid_rows, "test_rows": args.test_rows, "market_cues": args.market_cues,
            "split": list(SPLIT), "trials": TRIALS}


def load_saved(results_path: Path, budget: dict) -> dict | None:
    """What ``results_path`` holds ({} if nothing yet), or None when it holds runs of another budget."""
    # A rerun with the same --workdir keeps the runs already measured (an interrupted benchmark resumes).
    saved = json.loads(results_path.read_text()) if results_path.exists() else {}
    if saved and saved.get("budget") != budget:
        log(f"{results_path} holds runs of another budget ({saved.get('budget')}): use another --workdir")
        return None
    return saved


@dataclass
class Bench:
    """What every run of one benchmark shares: its arguments and budget, the data, the ranks, the runs so far."""

    args: argparse.Namespace
    budget: dict
    shards: Path
    train_rows: dict[str, int]
    test: Any  # the test rows every final run is scored on (a pandas DataFrame)
    ranks: dict[str, int]
    results: list[dict]
    started: float

    def save(self) -> None:
        (self.args.workdir / "results.json").write_text(json.dumps(
            {"budget": self.budget, "ranks": self.ranks, "train_rows": self.train_rows, "runs": self.results},
            indent=1))


def prepare_data(args: argparse.Namespace) -> tuple[Path, dict[str, int]]:
    """The shards (made once per --workdir, stripped of market cues if asked) and the training rows per task."""
    from features.shards import read_manifest, task_names

    with shared_lock(args.lock):
        shards = make_shards(args.workdir, args.rows)
        if args.market_cues == "strip":
            shards = strip_market_cues(shards, args.workdir / "shards-no-market-cues")
    manifest = read_manifest(shards)
    train_rows = {t: manifest["counts"]["train"].get(t, {}).get("rows", 0) for t in task_names(manifest)}
    return shards, train_rows


def budget_ranks(num_tasks: int) -> dict[str, int]:
    """matched_ranks, logged, with a warning for a method that integer ranks keep off the budget."""
    ranks, counts, target = matched_ranks(num_tasks)
    log(f"matched ranks {ranks}; trainable {counts} (mtl_lora reference {target:,})")
    for method, count in counts.items():
        if abs(count - target) > BUDGET_TOLERANCE * target:
            log(f"WARNING {method}: {count:,} trainable parameters is outside ±15% of {target:,} at integer ranks")
    return ranks


def set_up(args: argparse.Namespace, budget: dict, saved: dict, started: float) -> Bench:
    shards, train_rows = prepare_data(args)
    log(f"shards ready ({time.perf_counter() - started:.0f}s): train rows per task {train_rows}")
    test = sample_test_rows(shards, args.test_rows)
    ranks = budget_ranks(len(train_rows))
    return Bench(args, budget, shards, train_rows, test, ranks, saved.get("runs", []), started)


def already_run(results: list[dict], variant: str, phase: str, trial: int | None, seed: int) -> bool:
    return any(r["variant"] == variant and r["phase"] == phase and r["seed"] == seed
               and (phase == "seed" or r["trial"] == trial) for r in results)


def train_step(bench: Bench, client, step: tuple[str, str, int | None, int], label: str) -> tuple[dict, Any]:
    """Trains one step of the plan (a seed run takes its method's chosen trial): the run's record and config."""
    from pipelines.training.config import load_train_config
    from pipelines.training.loop import train

    variant, phase, trial, seed = step
    if phase == "seed":
        trial = chosen_trial(bench.results, variant)
    settings = TRIALS[variant][trial]
    out = bench.args.workdir / "models" / (f"{variant}-trial{trial}" if phase == "trial" else f"{variant}-seed{seed}")
    config = load_train_config(None, variant_overrides(variant, settings, bench.ranks, bench.args, seed))
    what = f"trial {trial}" if phase == "trial" else f"chosen trial {trial}"
    log(f"{label}: {variant} {what}, seed {seed} ({settings})")
    with shared_lock(bench.args.lock):
        t0 = time.perf_counter()
        result = train(bench.shards, out, config)
        train_s = time.perf_counter() - t0
    client.set_tag(result.run_id, "benchmark_variant", variant)
    client.set_tag(result.run_id, "benchmark_phase", f"{phase} {trial}")
    run = {"variant": variant, "phase": phase, "trial": trial, "seed": seed, "settings": settings,
           "valid_macro": result.best_macro_auc, "train_s": train_s, "run_id": result.run_id,
           "model": str(out), "examples_per_s": result.examples_per_second,
           "trainable": json.loads((out / "adsrel_model.json").read_text())["trainable_parameters"]}
    return run, config


def score_step(bench: Bench, client, run: dict, config, first_seed: int) -> None:
    """Scores what ``run`` makes final on test: a seed run itself, or its method's chosen trial once the
    last trial ran (linked as the method's first-seed model)."""
    from pipelines.training.config import load_train_config

    variant, seed = run["variant"], run["seed"]
    best = chosen_trial(bench.results, variant) if run["phase"] == "trial" else None
    if best is not None:
        chosen = next(r for r in bench.results
                      if r["variant"] == variant and r["phase"] == "trial" and r["trial"] == best)
        seed_dir = bench.args.workdir / "models" / f"{variant}-seed{first_seed}"  # where quality_diagnosis looks
        seed_dir.unlink(missing_ok=True)
        seed_dir.symlink_to(Path(chosen["model"]).name)
        overrides = variant_overrides(variant, chosen["settings"], bench.ranks, bench.args, seed)
        score_final(chosen, bench.test, client, load_train_config(None, overrides))
        log(f"{variant}: trial {chosen['trial']} chosen on valid ({chosen['valid_macro']:.4f}): "
            f"test macro AUC {chosen['macro']:.4f}")
    elif run["phase"] == "seed":
        score_final(run, bench.test, client, config)
        log(f"{variant} seed {seed}: test macro AUC {run['macro']:.4f}")


def run_all(bench: Bench) -> None:
    """Every step of the plan not in results.json yet, in order; results.json is saved after each."""
    from mlflow import MlflowClient

    client = MlflowClient()
    seeds = [int(s) for s in bench.args.seeds.split(",")]
    plan = run_plan(bench.args.variants.split(","), seeds)
    for number, step in enumerate(plan, 1):
        if already_run(bench.results, *step):
            continue
        label = f"run {number}/{len(plan)}"
        run, config = train_step(bench, client, step, label)
        bench.results.append(run)
        score_step(bench, client, run, config, seeds[0])
        bench.save()
        elapsed = (time.perf_counter() - bench.started) / 60
        log(f"{label} done in {run['train_s'] / 60:.1f} min; {elapsed:.0f} min so far")


def main() -> int:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report(args.workdir)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        log(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
        return 2
    set_environment(args.workdir)
    started = time.perf_counter()
    budget = run_budget(args)
    saved = load_saved(args.workdir / "results.json", budget)
    if saved is None:
        return 2
    bench = set_up(args, budget, saved, started)
    run_all(bench)
    report(args.workdir)
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min; results in {args.workdir}")
    return 0


def score_final(run: dict, test, client, config) -> None:
    """Test AUCs of a final run into ``run`` and its MLflow run; mtl_lora's learned structure too."""
    model = Path(run["model"])
    aucs, rate = test_scores(model, test)
    run.update(test=aucs, macro=float(np.mean([v for v in aucs.values() if v is not None])), score_rate=rate)
    for task, auc in aucs.items():
        if auc is not None:
            client.log_metric(run["run_id"], f"test/{task}/roc_auc", auc)
    client.log_metric(run["run_id"], "test/macro/roc_auc", run["macro"])
    if run["variant"] == "mtl_lora":
        structure = mtl_structure(model, config)
        if run["phase"] == "trial":
            (model.parent.parent / "mtl_structure.json").write_text(json.dumps(structure))
        run["structure"] = {k: v for k, v in structure.items() if k != "mixing"}  # per layer: seed 0's file only


def report(workdir: Path) -> int:
    """table.md and gain_vs_size.png from results.json (also after an interrupted run)."""
    saved = json.loads((workdir / "results.json").read_text())
    results, train_rows = saved["runs"], saved["train_rows"]
    tasks = list(train_rows)
    test = sample_test_rows(workdir / "shards", saved["budget"]["test_rows"])
    supported = supported_tasks(test)
    rows = test.groupby("task").size().to_dict()
    parts = ["## Test (chosen setting, mean over seeds)",
             "test rows per task: " + ", ".join(f"{t} {rows.get(t, 0)}" for t in tasks)
             + f"; not gate-supported: {', '.join(t for t in tasks if t not in supported) or 'none'}",
             table(results, tasks, supported),
             "## Tuning trials (seed 0, valid split)", trials_table(results)]
    movement = movement_table(results, tasks, train_rows)
    if movement:
        parts += ["## mtl_lora: how far the task-specific parameters moved from their start", movement]
    markdown = "\n\n".join(parts)
    (workdir / "table.md").write_text(markdown + "\n")
    if {"mtl_lora", "lora"} <= {r["variant"] for r in final_runs(results)}:
        gain_plot(results, train_rows, workdir / "gain_vs_size.png", supported, rows)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
