"""Why mtl_lora does or does not beat lora in the quality benchmark: three checks of its data and models.

Issue 6 asks, when the target is missed, to find out whether the data, the hyperparameters or the
implementation is the reason. This looks at the data and at where the trained models differ, on the
benchmark's own --workdir (its shards, the same test rows, the saved models):

1. headroom: per task, the test AUC of the latent grade synth drew each example from. Labels are
   that grade seen through judge noise and a click model; a scorer that sees only the text can at
   best recover the grade, so this AUC is (up to sampling noise) the ceiling of every method.
2. segment in the text: how well a bag-of-words logistic regression, trained on the train split's
   text (query, title, description, URL) alone, recovers market, vertical and task on the test rows.
   Task-aware methods can only win by knowing what the text does not already say.
3. where the models differ: the test AUC of each saved model (and of the latent grade, the ceiling)
   within each latent relation of query and ad, pooled over tasks: the shared core (exact,
   other_group, off_topic) against the segment-dependent rules (competitor and neighbour ads, whose
   relevance flips between segments).

4. task structure of mtl_lora: per pair of segments, the cosine of their learned Λ_t updates
   (Λ_t − I over all layers, as evaluation.plots draws it) and the overlap of their mixing
   softmax(w_t/τ) (sum of the element-wise minimum, averaged over layers), grouped into pairs that
   share a market, share a vertical, or neither, to see whether related segments end up close.

Scores are cached in --workdir/diagnosis/ so a rerun does not score again. Writes diagnosis.json and
prints a markdown report.

Run after the quality benchmark: python -m benchmarks.quality_diagnosis [--workdir bench-out/quality]
    [--variants lora,mtl_lora,full] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.quality import sample_test_rows
from evaluation.metrics import roc_auc

KEY = ["query", "ad_id", "market"]
RULE_RELATIONS = ("competitor", "neighbour")
CORE_RELATIONS = ("exact", "other_group", "off_topic")


def latent_columns(rows: int, seed: int = 0, dirt: float = 0.03) -> pd.DataFrame:
    """synth's latent grade and relation per example key, normalised exactly as prepare does.

    The benchmark's raw logs are ``synth_logs(rows, seed 0, dirt 0.03)``; regenerating them gives the
    latent columns that the written logs leave out. A key's copies (duplicates, case variants) share
    their content, so they share the grade; ``grades`` counts the distinct ones as a check.
    """
    from pyspark.sql import functions as F

    from features.schema import TEXT_LIMITS
    from features.task_map import locale_column
    from features.text import normalise_text_columns
    from pipelines.data.synth import synth_logs
    from pipelines.spark import build_session

    spark = build_session("adsrel-quality-diagnosis", "local[2]", {"spark.ui.enabled": "false"})
    logs = synth_logs(spark, rows, seed, dirt).select(
        "query", F.trim("ad_id").alias("ad_id"), locale_column(F.col("market")).alias("market"),
        "_grade", "_relation")
    logs = normalise_text_columns(logs, {"query": TEXT_LIMITS["query"]}, lowercase=("query",))
    latent = (
        logs.groupBy(*KEY)
        .agg(F.max("_grade").alias("latent_grade"), F.first("_relation").alias("relation"),
             F.countDistinct("_grade").alias("grades"))
        .toPandas()
    )
    spark.stop()
    return latent


def segment_recovery(shards: Path, test: pd.DataFrame, train_rows: int = 40_000) -> dict[str, float]:
    """Test accuracy of predicting market, vertical and task from the text alone (and the majority
    class's share, the accuracy of knowing nothing)."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    from features.shards import TEXT_COLUMNS, read_split

    train = read_split(shards, "train")
    train = train.sample(min(len(train), train_rows), random_state=0)

    def text(frame: pd.DataFrame) -> pd.Series:
        return frame[list(TEXT_COLUMNS)].agg(" | ".join, axis=1)

    vectorizer = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), token_pattern=r"[^\s|]+",
                                   alternate_sign=False)
    x_train, x_test = vectorizer.transform(text(train)), vectorizer.transform(text(test))
    out: dict[str, float] = {}
    for target in ("market", "vertical", "task"):
        classifier = LogisticRegression(max_iter=1000).fit(x_train, train[target])
        out[target] = float((classifier.predict(x_test) == test[target]).mean())
        out[f"{target}_majority"] = float(test[target].value_counts(normalize=True).iloc[0])
    return out


def cached_scores(workdir: Path, variant: str, seed: int, test: pd.DataFrame) -> np.ndarray | None:
    from models.scoring import Scorer

    model_dir = workdir / "models" / f"{variant}-seed{seed}"
    if not (model_dir / "adsrel_model.json").is_file():
        return None
    cache = workdir / "diagnosis" / f"scores-{variant}-seed{seed}.npy"
    if cache.is_file():
        scores = np.load(cache)
        if len(scores) == len(test):
            return scores
    print(f"quality-diagnosis: scoring {len(test)} test rows with {variant} seed {seed}", file=sys.stderr, flush=True)
    scores = np.asarray(Scorer.load(model_dir).predict(test))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, scores)
    return scores


def slice_aucs(test: pd.DataFrame, scores: np.ndarray) -> dict[str, float | None]:
    """``all``: the benchmark's macro AUC over tasks; then the AUC within each relation and within
    the shared-core and segment-rule groups, pooled over tasks: a rule's outcome changes between
    segments, so only a pooled AUC shows whether a model tells the segments' verdicts apart."""
    frame = test.assign(score=scores)
    per_task = [roc_auc(g["label"], g["score"]) for _, g in frame.groupby("task")]
    out: dict[str, float | None] = {"all": float(np.mean([a for a in per_task if a is not None]))}
    groups = {**{r: (r,) for r in (*CORE_RELATIONS, *RULE_RELATIONS)},
              "core": CORE_RELATIONS, "rules": RULE_RELATIONS}
    for name, relations in groups.items():
        part = frame[frame["relation"].isin(relations)]
        out[name] = roc_auc(part["label"], part["score"])
    return out


def pair_kind(a: dict, b: dict) -> str:
    """same_market / same_vertical / unrelated for two manifest tasks (a wildcard market is no market)."""
    if set(a["verticals"]) & set(b["verticals"]):
        return "same_vertical"
    if "*" not in a["markets"] and set(a["markets"]) & set(b["markets"]):
        return "same_market"
    return "unrelated"


def structure_by_pair_kind(mixing: list[np.ndarray], lambda_cosine: np.ndarray, lambda_shift: np.ndarray,
                           tasks: list[dict]) -> dict[str, dict[str, float]]:
    """Mean Λ_t-update cosine and mixing overlap per kind of segment pair, from each MTL-LoRA layer's
    mixing softmax(w_t/τ) [T, n], the task x task cosine of the learned Λ_t − I [T, T] and each
    task's Λ_t shift [T] (pass only named segments in ``tasks``: the catch-all spans segments)."""
    kinds: dict[str, dict[str, list[float]]] = {}
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            x, y = a["id"], b["id"]
            entry = kinds.setdefault(pair_kind(a, b), {"lambda_cosine": [], "mixing_overlap": []})
            entry["lambda_cosine"].append(float(lambda_cosine[x, y]))
            entry["mixing_overlap"].append(float(np.mean([np.minimum(m[x], m[y]).sum() for m in mixing])))
    out = {kind: {k: float(np.mean(v)) for k, v in values.items()} | {"pairs": len(values["lambda_cosine"])}
           for kind, values in sorted(kinds.items())}
    out["lambda_drift"] = {"mean": float(np.mean(lambda_shift))}
    return out


def task_structure(model_dir: Path, tasks: list[dict]) -> dict[str, dict[str, float]]:
    """:func:`structure_by_pair_kind` of a saved mtl_lora model, measured as its MLflow plots and
    the quality benchmark measure it (evaluation.plots): Λ_t shift averaged over layers."""
    import torch

    from evaluation.plots import lambda_shift, lambda_similarity, mtl_layers
    from models.artifact import load_model

    model = load_model(model_dir)
    layers = mtl_layers(model).values()
    with torch.no_grad():
        mixing = [layer.mixing_weights().cpu().numpy() for layer in layers]
    shift = np.mean([lambda_shift(layer) for layer in layers], axis=0)
    return structure_by_pair_kind(mixing, lambda_similarity(model), shift, tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--variants", default="lora,mtl_lora,full")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shards", type=Path, help="the shards the models were trained on (default WORKDIR/shards, "
                        "or WORKDIR/shards-no-market-cues after --market-cues strip)")
    parser.add_argument("--test-rows", type=int, help="as given to benchmarks.quality (default: read from "
                        "WORKDIR/results.json)")
    args = parser.parse_args()

    import torch

    from features.shards import read_manifest

    torch.set_num_threads(2)
    stripped = args.workdir / "shards-no-market-cues"
    shards = args.shards or (stripped if stripped.is_dir() else args.workdir / "shards")
    manifest = read_manifest(shards)
    test_rows = args.test_rows or json.loads((args.workdir / "results.json").read_text())["budget"]["test_rows"]
    test = sample_test_rows(shards, test_rows).reset_index(drop=True)

    latent = latent_columns(int(manifest["input"]["rows"]))
    test = test.merge(latent, on=KEY, how="left", validate="many_to_one")
    missing = int(test["latent_grade"].isna().sum())
    report: dict = {"test_rows": len(test), "unmatched_rows": missing,
                    "keys_with_several_grades": int((latent["grades"] > 1).sum())}
    test = test.dropna(subset=["latent_grade"])

    relation_share = test["relation"].value_counts(normalize=True).round(4).to_dict()
    report["relation_share"] = relation_share
    report["ceiling"] = {t: roc_auc(g["label"], g["latent_grade"]) for t, g in test.groupby("task")}
    report["ceiling_macro"] = float(np.mean([a for a in report["ceiling"].values() if a is not None]))
    report["segment_recovery"] = segment_recovery(shards, test)

    report["slices"] = {"ceiling": {k: [v] for k, v in slice_aucs(test, test["latent_grade"].to_numpy()).items()}}
    for variant in args.variants.split(","):
        runs = [slice_aucs(test, s) for seed in args.seeds.split(",")
                if (s := cached_scores(args.workdir, variant, int(seed), test)) is not None]
        if runs:
            report["slices"][variant] = {k: [r[k] for r in runs] for k in runs[0]}
    tasks = [t for t in manifest["tasks"] if t["name"] != manifest.get("unmapped")]
    report["structure"] = {seed: task_structure(args.workdir / "models" / f"mtl_lora-seed{seed}", tasks)
                           for seed in args.seeds.split(",")
                           if (args.workdir / "models" / f"mtl_lora-seed{seed}" / "adsrel_model.json").is_file()}
    (args.workdir / "diagnosis.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = [f"test rows {report['test_rows']} (unmatched to latent: {report['unmatched_rows']}); "
             f"relations: " + ", ".join(f"{k} {v:.1%}" for k, v in report["relation_share"].items()),
             "", f"ceiling (latent grade as score), macro AUC {report['ceiling_macro']:.4f}; per task: "
             + ", ".join(f"{t} {a:.3f}" for t, a in report["ceiling"].items() if a is not None), ""]
    rec = report["segment_recovery"]
    lines.append("segment from text alone (test accuracy; majority class): " + ", ".join(
        f"{t} {rec[t]:.3f} ({rec[t + '_majority']:.3f})" for t in ("market", "vertical", "task")))
    if report["slices"]:
        names = list(next(iter(report["slices"].values())))
        lines += ["", "| variant | seeds | " + " | ".join(names) + " |", "|---" * (2 + len(names)) + "|"]
        for variant, values in report["slices"].items():
            cells = []
            for name in names:
                xs = [x for x in values[name] if x is not None]
                cells.append(f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1):.4f}" if len(xs) > 1
                             else (f"{xs[0]:.4f}" if xs else "n/a"))
            lines.append(f"| {variant} | {len(values[names[0]])} | " + " | ".join(cells) + " |")
    if report.get("structure"):
        lines += ["", "mtl_lora task structure per kind of segment pair (mean over seeds "
                  + ",".join(report["structure"]) + "):"]
        per_seed = list(report["structure"].values())
        for kind in [k for k in per_seed[0] if k != "lambda_drift"]:
            cos = np.mean([s[kind]["lambda_cosine"] for s in per_seed])
            mix = np.mean([s[kind]["mixing_overlap"] for s in per_seed])
            lines.append(f"- {kind} ({per_seed[0][kind]['pairs']} pairs): Λ_t-update cosine {cos:.3f}, "
                         f"mixing overlap {mix:.3f}")
        drift = np.mean([s["lambda_drift"]["mean"] for s in per_seed])
        lines.append(f"- ||Λ_t − I|| / ||I|| is {drift:.1%} (mean over tasks and layers)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
