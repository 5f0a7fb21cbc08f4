"""`adsrel prepare`: raw logs -> task shards, quarantine and manifest (a Spark job)."""

from __future__ import annotations

import argparse
import json


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three numbers like 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected three numbers like 0.8,0.1,0.1")
    return values  # type: ignore[return-value]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from pipelines.data.prepare_config import PrepareConfig

    d = PrepareConfig()
    p = subparsers.add_parser(
        "prepare", help="turn raw query-ad logs into task shards with Spark",
        description="Validate, normalise, de-duplicate, label, map to tasks and split raw logs "
        "into Parquet shards under OUTPUT/shards, bad rows under OUTPUT/quarantine, and "
        "OUTPUT/manifest.json (written last; layout: docs/architecture.md, 'Prepared data'). Only a run that "
        "succeeds replaces an earlier output; a failed one leaves it as it was. "
        "Exit 0 done, 2 bad arguments, input or config.",
    )
    p.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="Parquet, JSON Lines or CSV files or directories")
    tasks = p.add_mutually_exclusive_group(required=True)
    tasks.add_argument("--task-map", metavar="YAML", help="task map (see configs/tasks.yaml)")
    tasks.add_argument("--task-by", metavar="KEYS",
                       help="one task per value of market, vertical or market,vertical")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="output directory (its shards/, quarantine/ and manifest.json are replaced)")
    p.add_argument("--master", default=None, help="Spark master (default local[*])")
    p.add_argument("--label-threshold", type=float, default=d.label_threshold,
                   help=f"mean judged grade (0..4) at or above which a pair is relevant "
                   f"(default {d.label_threshold:g})")
    p.add_argument("--no-click-labels", action="store_true",
                   help="exclude unjudged examples instead of labelling them from clicks")
    p.add_argument("--min-impressions", type=int, default=d.min_impressions,
                   help=f"impressions needed for a click-derived label (default {d.min_impressions})")
    p.add_argument("--click-ctr-threshold", type=float, default=d.click_ctr_threshold,
                   help=f"position-debiased CTR at or above which a click label is relevant (default "
                   f"{d.click_ctr_threshold:g})")
    p.add_argument("--split-ratios", type=_ratios, default=d.split_ratios,
                   help=f"train,valid,test ratios (default {','.join(f'{r:g}' for r in d.split_ratios)})")
    p.add_argument("--max-records-per-file", type=int, default=d.max_records_per_file,
                   help=f"bound on rows per shard file (default {d.max_records_per_file})")
    p.add_argument("--driver-memory", default=None, help="Spark driver memory, e.g. 2g")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.task_map import load_task_map
    from pipelines.data.inputs import check_input
    from pipelines.data.prepare import run_prepare
    from pipelines.data.prepare_config import PrepareConfig

    config = PrepareConfig(
        label_threshold=args.label_threshold,
        click_labels=not args.no_click_labels,
        min_impressions=args.min_impressions,
        click_ctr_threshold=args.click_ctr_threshold,
        split_ratios=args.split_ratios,
        max_records_per_file=args.max_records_per_file,
    )
    task_map = load_task_map(args.task_map) if args.task_map else None
    for path in args.input:  # fail fast, before Spark starts
        check_input(path)
    from pipelines.spark import build_session

    conf = {"spark.driver.memory": args.driver_memory} if args.driver_memory else {}
    spark = build_session("adsrel-prepare", args.master, conf)
    manifest = run_prepare(spark, args.input, args.output, task_map, config, args.task_by)
    summary = {k: manifest[k] for k in ("input", "accepted_rows", "quarantined_rows", "quarantine",
                                        "examples")}
    print(json.dumps({"output": args.output, **summary}))
    return 0
