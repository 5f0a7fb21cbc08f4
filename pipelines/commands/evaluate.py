"""`adsrel evaluate`: per-task offline metrics of a model on a split of prepared shards (MLflow, plots)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="per-task ROC/PR AUC, precision@recall, calibration of a model on a split",
        description="Score SPLIT of SHARDS (the output of `adsrel prepare`) with MODEL (an artifact directory, "
        "runs:/ or models:/ URI) through the serving scorer (calibration included), compute per-task, macro and "
        "micro metrics (roc_auc, pr_auc, precision_at_recall_<R>, recall_at_precision_<P>, precision/recall at "
        "the threshold, log_loss, brier, ece, n, positives; bootstrap 95% CIs of the AUCs), print them as a "
        "markdown table on stdout and log them to MLflow (metrics eval/<task>/<metric>, the table, the report, "
        "plots/; experiment ads-relevance; MLFLOW_TRACKING_URI or ./mlflow.db). Exit 0 done, 2 bad arguments.",
    )
    p.add_argument("--model", required=True, metavar="URI_OR_DIR", help="model directory, runs:/ or models:/ URI")
    p.add_argument("--shards", required=True, metavar="DIR", help="output directory of adsrel prepare")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--report", metavar="JSON", help="write the report JSON here")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the AUC intervals (0 = none; default 1000)")
    p.add_argument("--threshold", type=float, default=0.5, help="operating threshold of precision/recall (0.5)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="do not log to MLflow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.evaluate import log, log_evaluation, markdown_table, run_evaluation
    from features.errors import UserError

    if args.report and Path(args.report).is_dir():
        raise UserError(f"--report is a directory: {args.report}")
    result = run_evaluation(args.model, args.shards, split=args.split, bootstrap=args.bootstrap,
                            threshold=args.threshold, seed=args.seed)
    if args.report:
        path = Path(args.report)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.report, indent=2) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write --report {path}: {exc.strerror or exc}") from None
        log(f"report written to {path}")
    if args.mlflow:
        run_id = log_evaluation(result.report, scored=result.scored, model=result.scorer)
        log(f"logged to MLflow run {run_id}")
    print(markdown_table(result.report), end="")
    return 0
