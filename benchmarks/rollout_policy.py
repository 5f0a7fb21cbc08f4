"""Which rollout to default to: the whole gate against the per-segment gate, on real trained models.

Every model given is evaluated once on the test split of the same shards. For every ordered pair (the
first as the champion serving every segment, the second as the candidate) both gates decide with the
thresholds of ``--policy`` (configs/promotion.yaml), and the benchmark reports: the whole gate's
verdict; the segments the per-segment gate moves; the test macro ROC AUC over the gate-supported
segments as served before (the champion), after the whole gate and after the per-segment gate (each
segment at the ROC AUC of the version that serves it then). A pair of one recipe trained with two
seeds is the null case: a gate that moves segments there churns on noise.

Deciding and measuring on the same rows flatters every gate (it keeps what won on those rows), so
each pair is also run held out: the gates decide on half of each segment's test rows (by a hash of
example_id) and what they serve is measured on the other half (``held_out``).

Run: python -m benchmarks.rollout_policy --shards demo-out/shards --model mtl_lora=demo-out/models/mtl_lora
     --model lora=demo-out/models/lora [--model NAME=DIR ...] [--reseed 1] [--policy YAML] [--json PATH]
``--reseed S`` trains each model's recipe (the train config stored in its artifact) again with seed S
into DIR-seedS (once; an existing one is reused) and adds it as NAME-seedS.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

from benchmarks.figures import emit

ROOT = Path(__file__).resolve().parent.parent


def served_macro(reports: dict[str, dict], serving: dict[str, str], tasks: list[str]) -> float:
    """Macro ROC AUC over ``tasks``, each at the ROC AUC of the model serving it."""
    return sum(reports[serving[t]]["tasks"][t]["roc_auc"] for t in tasks) / len(tasks)


def half_of(scored, half: int):
    """The rows of ``half`` (0 or 1) of each segment, by a stable hash of example_id."""
    import hashlib

    keys = scored["example_id"].map(lambda e: hashlib.sha256(str(e).encode()).digest()[0] % 2)
    return scored[keys.to_numpy() == half].reset_index(drop=True)


def report_of(scored, data: dict) -> dict:
    """An evaluation report of per-row scores (no bootstrap), judgeable by the gates."""
    from evaluation.metrics import evaluate_tasks

    report = evaluate_tasks(scored["label"].to_numpy(), scored["score"].to_numpy(), scored["task"].to_numpy(),
                            bootstrap=0)
    return {**report, "data": data, "complete": True}


def compare(champion: str, candidate: str, scored: dict, policy, expected: list[str],
            measured: dict | None = None) -> dict:
    """Both gates on one pair, deciding on ``scored`` (name -> per-row scores): what each moves, and the
    served macro ROC AUC after each, on ``measured`` (the same rows unless given)."""
    from evaluation.gate import decide, support
    from evaluation.segment_gate import decide_segments, paired_scores

    data = {"manifest_digest": "benchmark", "split": "test"}
    reports = {name: report_of(rows, data) for name, rows in scored.items()}
    served = {name: report_of(rows, data) for name, rows in (measured or scored).items()}
    whole = decide(reports[candidate], reports[champion], dataclasses.replace(policy, rollout="whole"), expected)
    paired = paired_scores(scored[candidate], scored[champion])
    segments = decide_segments(reports[candidate], reports[champion], policy, expected, candidate_version=candidate,
                               serving=dict.fromkeys(expected, champion), paired=paired)
    supported = [t for t in expected if support(reports[candidate]["tasks"][t], policy)[0]
                 and support(served[candidate]["tasks"][t], policy)[0]]
    before = dict.fromkeys(expected, champion)
    after_whole = dict.fromkeys(expected, candidate if whole.promote else champion)
    moved = sorted(t for t, s in segments.segments.items() if s["takes"])
    return {
        "champion": champion, "candidate": candidate, "whole": "promoted" if whole.promote else "kept",
        "whole_reason": whole.reasons[0], "per_segment_moved": moved, "supported": len(supported),
        "gains": {t: [round(s.get("gain") or 0.0, 4), round(s.get("gain_low") or 0.0, 4),
                      round(s.get("gain_high") or 0.0, 4)] for t, s in segments.segments.items()},
        "served_macro": {name: round(served_macro(served, serving, supported), 4) for name, serving in (
            ("before", before), ("whole", after_whole), ("per_segment", segments.routing))},
    }


def totals(pairs: list[dict]) -> dict:
    """Over every pair: segments each gate moved, and the mean served macro ROC AUC after each."""
    def mean(key: str) -> float:
        return round(sum(p["served_macro"][key] for p in pairs) / len(pairs), 4)

    return {"pairs": len(pairs), "whole_promoted": sum(p["whole"] == "promoted" for p in pairs),
            "segments_moved_whole": sum(len(p["gains"]) for p in pairs if p["whole"] == "promoted"),
            "segments_moved_per_segment": sum(len(p["per_segment_moved"]) for p in pairs),
            "served_macro": {k: mean(k) for k in ("before", "whole", "per_segment")}}


def reseeded(directory: Path, shards: Path, seed: int) -> Path:
    """``directory``'s recipe trained again with ``seed``, in DIR-seedSEED (reused when there)."""
    from models.artifact import META_FILE, read_metadata
    from pipelines.training.config import TrainConfig
    from pipelines.training.loop import train

    out = Path(f"{directory}-seed{seed}")
    if not (out / META_FILE).is_file():
        print(f"training {out}", file=sys.stderr)
        train(shards, out, TrainConfig(**{**read_metadata(directory)["train_config"], "seed": seed}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--reseed", type=int, metavar="SEED", help="add each model's recipe trained with SEED")
    parser.add_argument("--policy", type=Path, default=ROOT / "configs" / "promotion.yaml")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from evaluation.evaluate import run_evaluation
    from evaluation.gate import load_policy
    from features.shards import read_manifest

    policy = load_policy(args.policy)
    models = dict(m.split("=", 1) for m in args.model)
    if args.reseed is not None:
        models.update({f"{name}-seed{args.reseed}": str(reseeded(Path(directory), args.shards, args.reseed))
                       for name, directory in list(models.items())})
    evaluations = {}
    for name, directory in models.items():
        print(f"evaluating {name}", file=sys.stderr)
        evaluations[name] = run_evaluation(directory, args.shards, split="test", bootstrap=0)
    counts = read_manifest(args.shards)["counts"]["test"]
    expected = sorted(t for t, c in counts.items() if int(c.get("rows", 0)) > 0)
    scored = {name: e.scored for name, e in evaluations.items()}
    halves = [{name: half_of(rows, h) for name, rows in scored.items()} for h in (0, 1)]
    ordered = list(itertools.permutations(models, 2))
    pairs = [compare(a, b, scored, policy, expected) for a, b in ordered]
    held_out = [compare(a, b, halves[0], policy, expected, measured=halves[1]) for a, b in ordered]
    figures = {"shards": str(args.shards), "policy": policy.to_dict(), "models": models,
               "macro": {n: round(e.report["macro"]["roc_auc"], 4) for n, e in evaluations.items()},
               "pairs": pairs, "held_out": held_out, "totals": {k: totals(v) for k, v in
                                                               (("in_sample", pairs), ("held_out", held_out))}}
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
