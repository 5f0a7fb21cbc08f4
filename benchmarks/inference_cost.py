"""Inference cost of each method on the scoring path, side by side (issue 6).

Loads the model artifacts that `benchmarks.quality` trained (one per variant, seed 0 by default) and
scores the same test rows with each through `models.scoring.Scorer` (the path of evaluation, the pyfunc
and batch scoring), round-robin so machine noise hits all alike. Two settings:
- mixed: rows of every task in one batch stream (what batch scoring does);
- one segment: rows of one task, unmerged and, where the method allows it, with that task's update
  folded into the base weights (`merge(task)`: then the adapter costs nothing at inference).
Reported: rows/s and the time relative to lora (mixed) or to the same model unmerged (one segment).

Run after the quality benchmark: python -m benchmarks.inference_cost [--workdir bench-out/quality]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.timing import interleaved_medians


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/quality"),
                        help="the --workdir of benchmarks.quality (models/ and shards/)")
    parser.add_argument("--seed", type=int, default=0, help="which seed's models to load")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def load_inputs(workdir: Path, seed: int, rows: int):
    """The seed's scorers by variant, ``rows`` mixed-task test rows and ``rows`` of the largest task (and
    its name); None when benchmarks.quality has left no models."""
    from features.shards import read_split
    from models.scoring import Scorer

    models = sorted(p.parent for p in (workdir / "models").glob(f"*-seed{seed}/adsrel_model.json"))
    if not models:
        print(f"no models under {workdir / 'models'}: run benchmarks.quality first", file=sys.stderr)
        return None
    test = read_split(workdir / "shards", "test")
    mixed = test.sample(min(rows, len(test)), random_state=0)
    largest = test["task"].value_counts().index[0]
    single = test[test.task == largest].sample(min(rows, int((test.task == largest).sum())), random_state=0)
    scorers = {m.name.rsplit("-seed", 1)[0]: Scorer.load(m, max_batch=64) for m in models}
    return scorers, mixed, single, largest


def time_scorers(scorers: dict, mixed, single, repeats: int) -> tuple[dict, dict, dict[str, str]]:
    """Median seconds per variant on the mixed rows, and on the one segment unmerged and merged (with why
    a variant cannot merge)."""
    mixed_s = interleaved_medians({v: (lambda s=s: s.logits(mixed, merge=False)) for v, s in scorers.items()},
                                  warmup=1, repeats=repeats)
    calls = {}
    for variant, scorer in scorers.items():
        calls[variant] = lambda s=scorer: s.logits(single, merge=False)
    merged = {}
    for variant, scorer in scorers.items():
        if not scorer.mergeable:
            merged[variant] = "cannot merge: no adapter layers"
            continue
        calls[variant + " merged"] = lambda s=scorer: s.logits(single, merge=True)
    single_s = interleaved_medians(calls, warmup=1, repeats=repeats)
    return mixed_s, single_s, merged


def report(scorers: dict, rows: tuple[int, int], mixed_s: dict, single_s: dict, merged: dict[str, str]) -> dict:
    """Prints rows/s per variant, mixed against lora and merged against unmerged; the same as a dict."""
    n_mixed, n_single = rows
    lora = mixed_s.get("lora")
    print(f"{'variant':<16} {'mixed rows/s':>13} {'vs lora':>8} {'1-seg rows/s':>13} {'merged rows/s':>14} "
          f"{'merged/unmerged':>16}")
    out = {}
    for variant in scorers:
        m_rate = n_mixed / mixed_s[variant]
        s_rate = n_single / single_s[variant]
        key = variant + " merged"
        merged_rate = n_single / single_s[key] if key in single_s else None
        ratio = f"{mixed_s[variant] / lora:.2f}x" if lora else "-"
        merged_text = f"{merged_rate:14,.0f}" if merged_rate else f"{'n/a':>14}"
        speedup = f"{single_s[variant] / single_s[key]:15.2f}x" if merged_rate else f"{'':>16}"
        print(f"{variant:<16} {m_rate:13,.0f} {ratio:>8} {s_rate:13,.0f} {merged_text} {speedup}")
        out[variant] = {"mixed_rows_per_s": m_rate, "time_vs_lora_mixed": mixed_s[variant] / lora if lora else None,
                        "single_rows_per_s": s_rate, "merged_rows_per_s": merged_rate,
                        "merge": merged.get(variant, "ok")}
    for variant, why in merged.items():
        print(f"{variant}: {why}")
    return out


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(2)
    inputs = load_inputs(args.workdir, args.seed, args.rows)
    if inputs is None:
        return 2
    scorers, mixed, single, largest = inputs
    mixed_s, single_s, merged = time_scorers(scorers, mixed, single, args.repeats)
    print(f"scoring {len(mixed)} mixed-task rows and {len(single)} rows of {largest}; median of {args.repeats}")
    out = report(scorers, (len(mixed), len(single)), mixed_s, single_s, merged)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
