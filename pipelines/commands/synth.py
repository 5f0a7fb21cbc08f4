"""`adsrel synth`: writes realistic synthetic raw query-ad logs (a Spark job)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth", help="generate synthetic raw query-ad logs with Spark",
        description="Generate synthetic raw query-ad logs (raw log schema) with Spark; "
        "deterministic for a seed. Exit 0 done, 2 bad arguments.",
    )
    p.add_argument("--output", required=True, help="output directory (replaced)")
    p.add_argument("--rows", required=True, type=int, help="number of log rows")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dirt", type=float, default=0.03,
                   help="fraction of rows spoiled with one kind of dirt (default 0.03)")
    p.add_argument("--format", choices=("parquet", "json", "csv"), default="parquet",
                   help="output format (default parquet)")
    p.add_argument("--partitions", type=int, default=None, help="output partitions")
    p.add_argument("--master", default=None, help="Spark master (default local[*])")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.errors import UserError
    from features.progress import log

    if args.rows < 1:
        raise UserError("--rows must be positive")
    if not 0.0 <= args.dirt <= 1.0:
        raise UserError("--dirt must be within 0..1")
    from pipelines.data.synth import synth_logs, write_logs
    from pipelines.spark import build_session

    spark = build_session("adsrel-synth", args.master)
    log("synth", f"generating {args.rows} rows (seed {args.seed})")
    write_logs(synth_logs(spark, args.rows, args.seed, args.dirt, args.partitions), args.output,
               args.format)
    print(f"{args.rows} rows written to {args.output}")
    return 0
