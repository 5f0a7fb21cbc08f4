"""`adsrel promote`: gate a candidate model against the champion and move the registry aliases."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "promote", help="evaluate a candidate against the champion and promote it if the gate passes",
        description="Register CANDIDATE as a version of ads-relevance if it is not one yet (a model directory or "
        "runs:/ URI; models:/ads-relevance/N and models:/ads-relevance@alias are used as they are), evaluate it and "
        "the current champion (alias champion) on the same split of SHARDS (reusing an earlier evaluation of the "
        "same model and data), set alias challenger on it and, when the gate of --policy passes, alias champion. "
        "The decision with its per-task reasons is printed as JSON on stdout, written to --report, logged as an "
        "artifact of the candidate's evaluation run and summarised in the version's tags adsrel.gate.*. Running it "
        "again on the same candidate and data changes nothing. In the per-segment rollout (the default) the candidate "
        "takes the segments it wins on its own evidence, and when segments end up served by different versions a "
        "routed version is registered and made champion (docs/architecture.md, 'Per-segment rollout'). "
        "MLFLOW_TRACKING_URI or ./mlflow.db.",
        epilog="exit codes: 0 promoted, routed (or already champion), 3 kept (the gate said no; reasons on stdout), "
        "2 user error (bad path, URI or policy), 1 an evaluation failed or another promotion moved the champion "
        "meanwhile (no alias moved).",
    )
    p.add_argument("--candidate", required=True, metavar="URI_OR_DIR",
                   help="model directory, runs:/ URI, models:/ads-relevance/N or models:/ads-relevance@alias")
    p.add_argument("--shards", required=True, metavar="DIR", help="output directory of adsrel prepare")
    p.add_argument("--report", metavar="JSON", help="also write the decision JSON here")
    p.add_argument("--policy", metavar="YAML", help="gate policy (every key optional; see configs/promotion.yaml)")
    p.add_argument("--rollout", choices=("per_segment", "whole"), default=None,
                   help="the gate's mode, over the policy's: per_segment (each segment on its own) or whole")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="bootstrap resamples for the confidence intervals of the evaluation (default: 200)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.gate import load_policy
    from evaluation.promote import EvaluationFailed, promote
    from evaluation.segment_gate import segment_lines
    from features.progress import log

    policy = load_policy(args.policy, **({"rollout": args.rollout} if args.rollout else {}))
    try:
        result = promote(args.candidate, args.shards, policy=policy, report_path=args.report, split=args.split,
                         bootstrap=args.bootstrap)
    except EvaluationFailed as exc:
        log("promote", f"failed: {exc}")
        return exc.exit_code
    print(json.dumps(result.to_dict(), sort_keys=True, default=str))
    for line in segment_lines(result.decision.segments):
        log("promote", f"segment {line}")
    summary = "; ".join(result.decision.reasons)
    champion = f" (champion: routed version {result.champion_after})" if result.status == "routed" else ""
    log("promote", f"{result.status} version {result.candidate.version}{champion}: {summary}")
    return result.exit_code
