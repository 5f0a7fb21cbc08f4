"""Scoring with a routed champion (two source versions over one backbone) against a plain one, side by side.

The candidates and the plain model are those of benchmarks/score_throughput.py (20,000 synthetic
candidates with a realistic length mix; all-MiniLM-L6-v2 with MTL-LoRA adapters for the 10 tasks of
configs/tasks.yaml). The second source is a LoRA model on the same backbone; the routed artifact
(models/routing.py) serves every other task with it. Each variant runs `adsrel score --engine local`
in a fresh process, round-robin over ``--repeats``:

- ``plain``: the MTL-LoRA model;
- ``routed``: the routed model, 5 tasks from each source.

Reported: pairs/s (the whole run, model load included) and the routed/plain ratio of the medians
(target >= 0.95); the peak resident memory of each process, and the resident memory the loaded model
adds (RSS after loading the scorer minus before), which for a routed model should grow by a second
source's adapters and heads, not by a second backbone.

Run: python -m benchmarks.routed_scoring [--rows 20000] [--repeats 3] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.figures import emit
from benchmarks.score_throughput import make_inputs, perturbed_model

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.95
VARIANTS = ("plain", "routed")


def rss_mib() -> float:
    """The resident memory of this process now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_routed(workdir: Path, plain: Path) -> Path:
    """A LoRA source on the plain model's backbone and the routed artifact of the two."""
    routed = workdir / "routed"
    if (routed / "adsrel_model.json").exists():
        return routed
    from features.task_map import load_task_map
    from models.artifact import model_digest
    from models.routing import Source, write_routed

    task_map = load_task_map(ROOT / "configs" / "tasks.yaml")
    lora = perturbed_model(workdir / "model-lora", "lora", rank=16, seed=1)
    sources = {"1": Source("1", plain, model_digest(plain)), "2": Source("2", lora, model_digest(lora))}
    routing = {t.name: "2" if i % 2 else "1" for i, t in enumerate(task_map.tasks)}
    return write_routed(routed, routing, sources, task_map_of="1")


def child(variant: str, workdir: Path) -> dict:
    from models.routing import load_scorer
    from pipelines.scoring.job import run_score

    candidates, model = workdir / "candidates-realistic", workdir / ("model" if variant == "plain" else "routed")
    before = rss_mib()
    load_scorer(model)  # the model's own memory, measured apart from a scoring run's buffers
    model_mib = rss_mib() - before
    summary = run_score(str(model), [str(candidates)], str(workdir / f"out-{variant}"), engine="local")
    return {"pairs": summary["input_rows"], "seconds": summary["seconds"], "model_mib": model_mib,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(variant: str, workdir: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.routed_scoring", "--child", variant, "--workdir", str(workdir)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    figures: dict = {"rows": args.rows, "repeats": args.repeats, "variants": {}}
    for variant, results in runs.items():
        rates = [r["pairs"] / r["seconds"] for r in results]
        figures["variants"][variant] = {
            "pairs_per_s": [round(r, 1) for r in rates], "median_pairs_per_s": round(statistics.median(rates), 1),
            "model_mib": round(statistics.median(r["model_mib"] for r in results), 1),
            "peak_mib": round(max(r["peak_mib"] for r in results), 1)}
    plain, routed = figures["variants"]["plain"], figures["variants"]["routed"]
    figures["ratio"] = round(routed["median_pairs_per_s"] / plain["median_pairs_per_s"], 3)
    figures["model_mib_added"] = round(routed["model_mib"] - plain["model_mib"], 1)
    figures["target_met"] = figures["ratio"] >= TARGET_RATIO
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adsrel-bench-score"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.workdir)))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    _, plain = make_inputs(args.workdir, args.rows, "realistic")
    make_routed(args.workdir, plain)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            runs[variant].append(in_child(variant, args.workdir))
            print(f"  {variant}: {runs[variant][-1]['pairs'] / runs[variant][-1]['seconds']:.1f} pairs/s",
                  file=sys.stderr)
    figures = report(runs, args)
    emit(figures, args.json)
    return 0 if figures["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
