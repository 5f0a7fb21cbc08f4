"""`adsrel score`: batch-score candidate (query, ad) pairs with a model, on Spark or locally."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="batch-score candidate pairs with a model (Spark or local)",
        description="Score candidate (query, ad) pairs (Parquet, JSON Lines or CSV: query, ad_id, ad_title, "
        "ad_description, display_url, market, vertical, optional candidate_id) with MODEL. The model URI is "
        "resolved once at the start (an alias to the version it names now). Writes OUTPUT/scores/, "
        "OUTPUT/rejected/reason=*/ (rows that cannot be scored, as read) and, last, OUTPUT/summary.json "
        "(input rows = scored + rejected); the layout: docs/architecture.md, 'Batch scoring output'. Each scored row "
        "names the version whose parameters scored it (source_version: a routed champion's source). --shadow URI "
        "scores every row with a second model too (shadow_score, shadow_version; the summary compares the two per "
        "segment) without changing score; a failing shadow fails the run. Only a run "
        "that succeeds replaces an earlier output; a failed one leaves it as it was. "
        "Exit 0 done, 2 bad arguments or data.",
    )
    p.add_argument("--model", required=True, metavar="URI_OR_DIR",
                   help="models:/ads-relevance@champion, models:/ads-relevance/N, runs:/ URI or model directory")
    p.add_argument("--candidates", required=True, nargs="+", metavar="PATH", help="candidate files or directories")
    p.add_argument("--output", required=True, metavar="DIR", help="output directory (its scores/ and rejected/ "
                   "are replaced)")
    p.add_argument("--engine", choices=("spark", "local"), default="spark",
                   help="spark (default; --master or spark-submit for a cluster) or local (no JVM, this process)")
    p.add_argument("--master", default=None, help="Spark master (default local[*])")
    p.add_argument("--shadow", metavar="URI_OR_DIR", default=None,
                   help="a second model scoring beside the first, e.g. models:/ads-relevance@challenger")
    p.add_argument("--batch-rows", type=int, default=4096, metavar="N",
                   help="rows read and scored at a time by the local engine (default 4096)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.errors import UserError
    from pipelines.scoring.job import run_score

    if args.batch_rows < 1:
        raise UserError("--batch-rows must be positive")
    summary = run_score(args.model, args.candidates, args.output, engine=args.engine, master=args.master,
                        batch_rows=args.batch_rows, shadow=args.shadow)
    print(json.dumps({k: summary[k] for k in ("output", "input_rows", "scored", "rejected", "model", "seconds")}))
    return 0
