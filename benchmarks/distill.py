"""Teacher -> student: what a distilled student keeps of its teacher's quality, at what scoring speed.

The teacher is mtl_lora on the full all-MiniLM-L6-v2 (6 blocks). Students keep the backbone's first
``--layers`` blocks (3 and 2), each trained (a) on the labels only and (b) distilled from the teacher
(``teacher=<its directory>``, distill_alpha and distill_temperature as configs/train.yaml has them
unless given), at the same rows, steps and settings as the teacher, for every seed of ``--seeds``. On
the quality benchmark's kind of shards (synthetic logs, 10 segments, split 60/10/30), every model is
scored on the same test rows (per-segment and macro ROC AUC), then on the score benchmark's candidates
(the first ``--score-rows``, the batch scorer's own path, every model in turn in this process, the
teacher first and again last so drift shows) for pairs/s.

Targets: a distilled student keeps >= 98% of the teacher's macro ROC AUC at >= 1.8x its pairs/s, and
distilled beats labels-only at the same size. Finished trainings are reused on a rerun (their
checkpoints say so), so an interrupted benchmark resumes, and variants (``--student-epochs``,
``--alpha``, ``--temperature``, ``--modes``) train only their own students against the same teacher.
Writes results[-variant].json and table[-variant].md to --workdir.

Run: python -m benchmarks.distill [--rows 7000] [--epochs 2] [--layers 3,2] [--seeds 0,1,2]
     [--workdir bench-out/distill] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.figures import emit
from benchmarks.quality import make_shards, sample_test_rows, test_scores

TARGET_KEEP, TARGET_SPEEDUP = 0.98, 1.8


def log(message: str) -> None:
    print(f"bench-distill: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7_000, help="synthetic raw log rows")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--student-epochs", type=float, help="the students' epochs (default: the teacher's)")
    parser.add_argument("--modes", default="labels,distilled", help="which students: labels, distilled")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--layers", default="3,2", help="student sizes: blocks of the backbone kept")
    parser.add_argument("--seeds", default="0,1,2", help="students' seeds (the teacher: the first)")
    parser.add_argument("--alpha", type=float, help="distill_alpha (default: the config's)")
    parser.add_argument("--temperature", type=float, help="distill_temperature (default: the config's)")
    parser.add_argument("--test-rows", type=int, default=2000, help="test rows per segment at most")
    parser.add_argument("--score-rows", type=int, default=4000, help="candidates scored per model for pairs/s")
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/distill"))
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def train_model(shards: Path, out: Path, args: argparse.Namespace, **settings) -> Path:
    """One training (reused when its checkpoints say it finished under the same config)."""
    from pipelines.training.config import load_train_config
    from pipelines.training.loop import train

    base = {"method": "mtl_lora", "epochs": args.epochs, "batch_size": args.batch_size, "max_length": args.max_length,
            "eval_every": 0, "valid_max_rows": 500, "log_every": 50, "mlflow": False,
            "teacher_cache": str(args.workdir / "teacher-cache")}
    config = load_train_config(None, [f"{k}={v}" for k, v in {**base, **settings}.items()])
    started = time.perf_counter()
    train(shards, out, config)
    log(f"{out.name}: trained in {time.perf_counter() - started:.0f} s")
    return out


def plan(args: argparse.Namespace) -> list[dict]:
    """Every student: (blocks, labels or distilled, seed)."""
    distill = {k: v for k, v in (("distill_alpha", args.alpha), ("distill_temperature", args.temperature))
               if v is not None}
    epochs = {"epochs": args.student_epochs} if args.student_epochs else {}
    return [{"name": f"student-{layers}-{mode}-seed{seed}{variant_suffix(args, mode)}", "layers": layers,
             "mode": mode, "seed": seed,
             "settings": {"backbone_layers": layers, "seed": seed, **epochs,
                          **({"teacher": str(args.workdir / "teacher"), **distill} if mode == "distilled" else {})}}
            for layers in (int(x) for x in args.layers.split(",")) for mode in args.modes.split(",")
            for seed in (int(x) for x in args.seeds.split(","))]


def variant_suffix(args: argparse.Namespace, mode: str | None = None) -> str:
    """What sets a variant's students apart from the default ones (their directory and result names)."""
    parts = [f"e{args.student_epochs:g}" if args.student_epochs else ""]
    if mode != "labels":
        parts += [f"a{args.alpha:g}" if args.alpha is not None else "", f"T{args.temperature:g}"
                  if args.temperature is not None else ""]
    return "".join(f"-{p}" for p in parts if p)


def pairs_per_second(model: Path, candidates) -> float:
    from models.routing import load_scorer

    scorer = load_scorer(model)
    scorer.predict(candidates.head(64))  # warm: first-call allocations out of the timing
    started = time.perf_counter()
    scorer.predict(candidates)
    return len(candidates) / (time.perf_counter() - started)


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def summarise(teacher: dict, students: list[dict], tasks: list[str]) -> dict:
    """Per (blocks, mode): macro and per-segment ROC AUC over seeds, pairs/s, and the targets."""
    groups: dict[str, dict] = {}
    for s in students:
        g = groups.setdefault(f"{s['layers']}-{s['mode']}", {"layers": s["layers"], "mode": s["mode"], "runs": []})
        g["runs"].append(s)
    rows = {}
    for key, g in groups.items():
        runs = g["runs"]
        rows[key] = {"layers": g["layers"], "mode": g["mode"], "seeds": len(runs),
                     "macro_roc_auc": mean_std([r["macro"] for r in runs]),
                     "per_segment": {t: mean_std([r["auc"][t] for r in runs]) for t in tasks
                                     if all(r["auc"].get(t) is not None for r in runs)},
                     "pairs_per_s": round(statistics.median(r["pairs_per_s"] for r in runs), 1)}
        rows[key]["keeps"] = round(rows[key]["macro_roc_auc"]["mean"] / teacher["macro"], 4)
        rows[key]["speedup"] = round(rows[key]["pairs_per_s"] / teacher["pairs_per_s"], 2)
    checks = {}
    for layers in sorted({g["layers"] for g in groups.values()}, reverse=True):
        d, lab = rows.get(f"{layers}-distilled"), rows.get(f"{layers}-labels")
        if d and lab:
            checks[f"{layers}_blocks"] = {
                "keeps_98pct": d["keeps"] >= TARGET_KEEP, "speedup_1.8x": d["speedup"] >= TARGET_SPEEDUP,
                "distilled_beats_labels": d["macro_roc_auc"]["mean"] > lab["macro_roc_auc"]["mean"],
                "distilled_minus_labels": round(d["macro_roc_auc"]["mean"] - lab["macro_roc_auc"]["mean"], 4)}
    return {"students": rows, "targets": checks}


def table(teacher: dict, summary: dict, tasks: list[str]) -> str:
    rows = summary["students"]
    head = "| model | macro ROC AUC | keeps | pairs/s | speed-up | " + " | ".join(tasks) + " |"
    lines = [head, "|" + "---|" * (5 + len(tasks))]
    lines.append(f"| teacher (6 blocks) | {teacher['macro']:.4f} | 1.000 | {teacher['pairs_per_s']:.1f} | 1.00 | "
                 + " | ".join(f"{teacher['auc'][t]:.4f}" if teacher["auc"].get(t) is not None else "-" for t in tasks)
                 + " |")
    for r in rows.values():
        m = r["macro_roc_auc"]
        lines.append(f"| {r['layers']} blocks, {r['mode']} | {m['mean']:.4f} ± {m['std']:.4f} | {r['keeps']:.3f} | "
                     f"{r['pairs_per_s']:.1f} | {r['speedup']:.2f} | "
                     + " | ".join(f"{r['per_segment'][t]['mean']:.4f}" if t in r["per_segment"] else "-" for t in tasks)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    from benchmarks.score_throughput import make_inputs

    started = time.perf_counter()
    shards = make_shards(args.workdir, args.rows)
    first_seed = int(args.seeds.split(",")[0])
    teacher_dir = train_model(shards, args.workdir / "teacher", args, seed=first_seed)
    students = plan(args)
    for s in students:
        train_model(shards, args.workdir / s["name"], args, **s["settings"])
    test = sample_test_rows(shards, args.test_rows)
    tasks = sorted(test["task"].unique())
    candidates_dir, _ = make_inputs(Path("/tmp/adsrel-bench-score"), 20_000, "realistic")
    import pandas as pd

    candidates = pd.read_parquet(candidates_dir).head(args.score_rows)

    def measure(model: Path) -> dict:
        aucs, _ = test_scores(model, test)
        known = [v for v in aucs.values() if v is not None]
        return {"auc": aucs, "macro": round(statistics.fmean(known), 4), "pairs_per_s": pairs_per_second(model,
                                                                                                            candidates)}

    teacher = measure(teacher_dir)
    log(f"teacher: macro {teacher['macro']:.4f}, {teacher['pairs_per_s']:.1f} pairs/s")
    for s in students:
        s.update(measure(args.workdir / s["name"]))
        log(f"{s['name']}: macro {s['macro']:.4f}, {s['pairs_per_s']:.1f} pairs/s")
    teacher_again = pairs_per_second(teacher_dir, candidates)
    teacher["pairs_per_s_runs"] = [round(teacher["pairs_per_s"], 1), round(teacher_again, 1)]
    teacher["pairs_per_s"] = round(statistics.fmean(teacher["pairs_per_s_runs"]), 1)
    summary = summarise(teacher, students, tasks)
    suffix = variant_suffix(args)
    (args.workdir / f"table{suffix}.md").write_text(table(teacher, summary, tasks))
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "test_rows": len(test), "teacher": teacher, **summary,
               "runs": [{k: v for k, v in s.items() if k != "settings"} for s in students],
               "minutes": round((time.perf_counter() - started) / 60, 1)}
    (args.workdir / f"results{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    log("table: " + str(args.workdir / f"table{suffix}.md"))
    emit({"teacher": {"macro_roc_auc": teacher["macro"], "pairs_per_s": teacher["pairs_per_s"],
                      "pairs_per_s_runs": teacher["pairs_per_s_runs"]},
          "students": {k: {"macro_roc_auc": v["macro_roc_auc"], "keeps": v["keeps"], "pairs_per_s": v["pairs_per_s"],
                           "speedup": v["speedup"]} for k, v in summary["students"].items()},
          "targets": summary["targets"]}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
