"""`adsrel train`: fine-tune a multi-task adapter model on prepared shards (Accelerate, MLflow)."""

from __future__ import annotations

import argparse
import json

from pipelines.training.config import FIELDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune MTL-LoRA (or a baseline) on task shards",
        description="Train on the train split of SHARDS (the output of `adsrel prepare`), validate per task "
        "on its valid split, write the best model artifact to OUTPUT (nothing else goes there), checkpoints to "
        "CHECKPOINTS (a re-run resumes from the last one when the config, data and backbone match; a finished "
        "run run again trains and logs nothing more) and log the run and the model to MLflow "
        "(experiment and registered model ads-relevance; MLFLOW_TRACKING_URI or ./mlflow.db). "
        "Data parallel: `accelerate launch -m pipelines.cli train ...` or `torchrun -m pipelines.cli train ...`. "
        "Exit 0 done, 2 bad arguments or data, 3 the loss diverged.",
        epilog="config keys (YAML file or --set): " + ", ".join(FIELDS),
    )
    p.add_argument("--shards", required=True, metavar="DIR", help="output directory of adsrel prepare")
    p.add_argument("--config", metavar="YAML", help="training config (every key optional; see configs/train.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method=lora --set rank=16 (repeatable)")
    p.add_argument("--output", required=True, metavar="DIR", help="model artifact directory")
    p.add_argument("--checkpoints", metavar="DIR",
                   help="checkpoint directory (default: OUTPUT.checkpoints beside the model directory); its files "
                   "are unpickled on resume: trusted input only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.training.config import load_train_config
    from pipelines.training.loop import train

    config = load_train_config(args.config, args.overrides)
    result = train(args.shards, args.output, config, checkpoints=args.checkpoints)
    rate = result.examples_per_second  # None when a finished run was run again and trained nothing
    print(json.dumps({"output": str(result.output), "steps": result.steps, "best_macro_roc_auc": result.best_macro_auc,
                      "valid_roc_auc": result.valid, "examples_per_second": None if rate is None else round(rate, 2),
                      "mlflow_run_id": result.run_id, "model_version": result.model_version}))
    return 0
