"""`adsrel demo`: the whole product on synthetic data, on one machine, in minutes.

synth logs and candidates -> prepare -> train MTL-LoRA and a LoRA baseline at matched trainable budgets
-> evaluate both on the test split -> the promotion gate (the first becomes champion, the second
challenges it) -> batch-score the candidates with the champion -> a per-task table.

Everything goes under ``workdir``; MLflow uses MLFLOW_TRACKING_URI, else ./mlflow.db (`make mlflow-ui`).
The terminal shows the stages and their progress; everything Spark, transformers and MLflow print
goes to ``<workdir>/demo.log``. ``<workdir>/state.json`` records what each stage was made from, so a
second run redoes only what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from features.progress import others_to_log

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE_COLUMNS = ["query", "ad_id", "ad_title", "ad_description", "display_url", "market", "vertical"]
METHODS = ("mtl_lora", "lora")  # in the order they meet the gate: the first becomes champion


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and settings of the demo; the defaults are sized for a 2-core CPU (see the README)."""

    workdir: Path = Path("demo-out")
    rows: int = 30_000
    candidates: int = 2_000
    steps: int = 100
    batch_size: int = 32
    max_length: int = 64
    lr: float = 1e-3
    rank: int = 8
    valid_rows: int = 100  # per task, for the validation during training
    bootstrap: int = 200
    backbone: str = "all-MiniLM-L6-v2"
    master: str = "local[2]"
    seed: int = 0
    policy: Path = ROOT / "configs" / "promotion.yaml"
    extra_train: tuple[str, ...] = field(default_factory=tuple)  # more --set key=value, for tests


class State:
    """What each finished stage was made from (a digest of its inputs) and what it produced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

    @staticmethod
    def key(**inputs: Any) -> str:
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def fresh(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stage's recorded result when it was made from ``key``, else None (it runs)."""
        entry = self.stages.get(stage)
        return entry["result"] if entry and entry.get("key") == key else None

    def record(self, stage: str, key: str, result: dict[str, Any]) -> dict[str, Any]:
        self.stages[stage] = {"key": key, "result": result}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.stages, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(self.path)
        return result


class Stages:
    """``[3/7] train mtl_lora ...`` lines with the time since the demo started."""

    def __init__(self, total: int, terminal: TextIO) -> None:
        self.total, self.terminal, self.started, self.number = total, terminal, time.perf_counter(), 0

    def begin(self, text: str) -> None:
        self.number += 1
        self.say(f"[{self.number}/{self.total}] {text}")

    def say(self, text: str) -> None:
        print(f"adsrel demo [{time.perf_counter() - self.started:5.0f} s] {text}", file=self.terminal, flush=True)


class Demo:
    def __init__(self, config: DemoConfig, stages: Stages) -> None:
        self.config, self.stages = config, stages
        self.work = Path(config.workdir)
        self.state = State(self.work / "state.json")
        self._spark = None

    @property
    def spark(self):
        if self._spark is None:
            from pipelines.spark import SCORING_SETTINGS, build_session

            self._spark = build_session("adsrel-demo", self.config.master, SCORING_SETTINGS)
        return self._spark

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()

    def skipped(self, what: str) -> None:
        self.stages.say(f"      {what}: unchanged since the last run, reused")

    # ----------------------------------------------------------------- the stages
    def synth(self) -> None:
        c = self.config
        self.stages.begin(f"synth: {c.rows:,} raw log rows and {c.candidates:,} candidate pairs (Spark)")
        key = State.key(rows=c.rows, candidates=c.candidates, seed=c.seed)
        if self.state.fresh("synth", key) is not None and (self.work / "raw").is_dir():
            return self.skipped("synthetic logs")
        from pipelines.data.synth import synth_logs, write_logs

        write_logs(synth_logs(self.spark, c.rows, c.seed, 0.03), str(self.work / "raw"))
        candidates = synth_logs(self.spark, c.candidates, c.seed + 1, 0.03).select(*CANDIDATE_COLUMNS)
        candidates.coalesce(1).write.mode("overwrite").parquet(str(self.work / "candidates"))
        self.state.record("synth", key, {"raw": str(self.work / "raw")})

    def prepare(self) -> dict:
        self.stages.begin("prepare: validate, normalise, label and split into task shards (Spark)")
        key = State.key(synth=self.state.stages["synth"]["key"], task_map=(ROOT / "configs/tasks.yaml").read_text())
        shards = self.work / "shards"
        if self.state.fresh("prepare", key) is not None and (shards / "manifest.json").is_file():
            self.skipped("task shards")
            return json.loads((shards / "manifest.json").read_text())
        from features.task_map import load_task_map
        from pipelines.data.prepare import run_prepare
        from pipelines.data.prepare_config import PrepareConfig

        manifest = run_prepare(self.spark, [str(self.work / "raw")], str(shards),
                               load_task_map(ROOT / "configs/tasks.yaml"), PrepareConfig())
        self.stages.say(f"      {manifest['accepted_rows']:,} rows accepted, {manifest['quarantined_rows']:,} "
                        f"quarantined; {manifest['examples']['written']:,} examples in {len(manifest['tasks'])} tasks")
        self.state.record("prepare", key, {"examples": manifest["examples"]["written"]})
        return manifest

    def lora_rank(self, num_tasks: int) -> int:
        """LoRA's rank at MTL-LoRA's trainable budget (rank, 3 up-projections)."""
        c = self.config
        key = State.key(backbone=c.backbone, rank=c.rank, tasks=num_tasks)
        known = self.state.fresh("budget", key)
        if known is not None:
            return known["lora_rank"]
        from models.backbone import load_backbone
        from models.budget import matched_rank, trainable_parameters
        from models.config import AdapterConfig

        backbone = load_backbone(c.backbone)
        target = trainable_parameters(backbone, AdapterConfig(method="mtl_lora", num_tasks=num_tasks, rank=c.rank))
        rank, count = matched_rank(backbone, "lora", target, num_tasks=num_tasks)
        self.stages.say(f"      matched budgets: mtl_lora rank {c.rank} trains {target:,} parameters, lora rank "
                        f"{rank} {count:,}")
        return self.state.record("budget", key, {"lora_rank": rank, "mtl_lora": target, "lora": count})["lora_rank"]

    def train(self, method: str, rank: int) -> Path:
        c = self.config
        self.stages.begin(f"train {method} (rank {rank}): {c.steps} steps of {c.batch_size} pairs on {c.backbone}")
        from pipelines.training.config import load_train_config
        from pipelines.training.loop import train

        settings = [f"method={method}", f"rank={rank}", f"backbone={c.backbone}", f"max_steps={c.steps}",
                    f"eval_every={c.steps}", f"batch_size={c.batch_size}", f"max_length={c.max_length}",
                    f"lr={c.lr}", f"valid_max_rows={c.valid_rows}", f"seed={c.seed}", "log_every=10",
                    *c.extra_train]
        output = self.work / "models" / method
        result = train(self.work / "shards", output, load_train_config(ROOT / "configs" / "train.yaml", settings))
        valid = result.valid.get("macro")
        self.stages.say(f"      valid macro ROC AUC {valid:.4f}" if valid is not None else "      no validation AUC")
        return output

    def evaluate(self, method: str, model: Path) -> dict:
        from evaluation.evaluate import log_evaluation, run_evaluation
        from features.shards import manifest_digest
        from models.artifact import model_digest

        key = State.key(model=model_digest(model), data=manifest_digest(self.work / "shards"),
                        bootstrap=self.config.bootstrap)
        path = self.work / "reports" / f"{method}.json"
        known = self.state.fresh(f"evaluate-{method}", key)
        if known is not None and path.is_file():
            self.skipped(f"evaluation of {method}")
            return json.loads(path.read_text())
        result = run_evaluation(model, self.work / "shards", split="test", bootstrap=self.config.bootstrap)
        run_id = log_evaluation(result.report, scored=result.scored, model=result.scorer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.report, indent=2) + "\n")
        self.state.record(f"evaluate-{method}", key, {"mlflow_run_id": run_id})
        return result.report

    def promote(self, models: dict[str, Path]) -> dict[str, dict]:
        self.stages.begin("promotion gate: " + ", then ".join(models) + " against the champion")
        from evaluation.gate import load_policy
        from evaluation.promote import promote
        from evaluation.registry import CHAMPION, REGISTERED_MODEL, registered_version
        from features.shards import manifest_digest
        from models.artifact import model_digest

        key = State.key(models={m: model_digest(p) for m, p in models.items()},
                        data=manifest_digest(self.work / "shards"), policy=Path(self.config.policy).read_text())
        known = self.state.fresh("promote", key)
        try:
            champion = registered_version(f"models:/{REGISTERED_MODEL}@{CHAMPION}")
        except Exception:  # noqa: BLE001 - no champion (yet): promote decides
            champion = None
        if known is not None and known.get("champion_after") == champion:
            self.skipped("gate decisions")
            return {m: json.loads((self.work / f"promotion-{m}.json").read_text()) for m in models}
        decisions = {}
        for method, model in models.items():
            result = promote(str(model), self.work / "shards", policy=load_policy(self.config.policy),
                             report_path=self.work / f"promotion-{method}.json", bootstrap=self.config.bootstrap)
            decisions[method] = result.to_dict()
            self.stages.say(f"      {method}: {result.status} (version {result.candidate.version}): "
                            f"{result.decision.reasons[0]}")
        last = decisions[list(models)[-1]]
        self.state.record("promote", key, {"champion_after": last["champion_after"]})
        return decisions

    def score(self) -> dict:
        self.stages.begin("batch-score the candidates with models:/ads-relevance@champion (adsrel score, Spark)")
        from evaluation.registry import CHAMPION, REGISTERED_MODEL, registered_version
        from pipelines.scoring.job import run_score
        from pipelines.scoring.output import SUMMARY

        uri = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
        version = registered_version(uri)
        out = self.work / "scores"
        key = State.key(version=version, synth=self.state.stages["synth"]["key"])
        if self.state.fresh("score", key) is not None and (out / SUMMARY).is_file():
            self.skipped("scores")
            return json.loads((out / SUMMARY).read_text())
        summary = run_score(uri, [str(self.work / "candidates")], str(out), engine="spark", spark=self.spark)
        self.state.record("score", key, {"scored": summary["scored"]})
        return summary


def _auc(metrics: dict) -> str:
    value, low, high = (metrics.get(k) for k in ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high"))
    if value is None:
        return "—"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else f"{value:.3f}"


def _verdict(task: str, challenge: dict, names: dict[str, str]) -> str:
    """The gate's verdict on one task: per segment (which version serves it after, and the paired
    gain), else the whole rollout's status."""
    segment = (challenge.get("segments") or {}).get(task)
    if segment is None:
        verdict = (challenge.get("per_task") or {}).get(task, {})
        return verdict.get("status", "—") + (f" ({verdict['note']})" if verdict.get("note") else "")
    gain = (f"gain {segment['gain']:+.3f} [{segment['gain_low']:+.3f}, {segment['gain_high']:+.3f}]"
            if segment.get("gain") is not None else segment["reason"])
    to = names.get(segment["to"], f"version {segment['to']}")
    return f"{'takes' if segment['takes'] else 'stays'}: {to} ({gain})"


def summary_table(reports: dict[str, dict], challenge: dict, names: dict[str, str] | None = None) -> str:
    """Per task: rows, each model's test ROC AUC with its 95% interval, the gate's verdict (``names``:
    version -> method, to name who serves a segment)."""
    methods = list(reports)
    tasks = list(next(iter(reports.values()))["tasks"])
    header = ["task", "test rows", *[f"{m} ROC AUC [95% CI]" for m in methods], "gate"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for task in tasks:
        n = reports[methods[0]]["tasks"][task].get("n")
        cells = [task, str(n), *[_auc(reports[m]["tasks"][task]) for m in methods],
                 _verdict(task, challenge, names or {})]
        lines.append("| " + " | ".join(cells) + " |")
    macro = [f"{reports[m]['macro']['roc_auc']:.4f}" if reports[m]["macro"].get("roc_auc") is not None else "—"
             for m in methods]
    verdict = f"{methods[-1]}: {challenge.get('status', '')}"
    lines.append("| " + " | ".join(["macro", "", *macro, verdict]) + " |")
    return "\n".join(lines)


def champion_line(challenge: dict, names: dict[str, str], reports: dict[str, dict]) -> str:
    """Who is champion now: one method's version, or a routed version and which version serves what."""
    champion = challenge["champion_after"]
    if champion in names:
        method = names[champion]
        return (f"champion: {method} (models:/ads-relevance/{champion}), test macro ROC AUC "
                f"{reports[method]['macro']['roc_auc']:.4f}")
    routing = challenge.get("routing_after") or {}
    served = {v: sorted(t for t, s in routing.items() if s == v) for v in sorted(set(routing.values()))}
    return (f"champion: routed version {champion} (models:/ads-relevance/{champion}): "
            + "; ".join(f"{names.get(v, v)} (version {v}) serves {', '.join(tasks)}" for v, tasks in served.items()))


def rows_by_source(scores: Path) -> dict[str, int]:
    """Scored rows per source_version (the version whose parameters scored them)."""
    from features.candidates import read_scored_rows

    versions = read_scored_rows(scores / "scores", ["source_version"]).column("source_version").to_pylist()
    return dict(sorted(Counter(str(v) for v in versions).items()))


def run_demo(config: DemoConfig | None = None) -> int:
    config = config or DemoConfig()
    work = Path(config.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "demo.log"
    with others_to_log(log_path, (1, 2)) as terminal:
        out, err = terminal[1], terminal[2]
        stages = Stages(7, err)
        stages.say(f"the whole pipeline under {work}/ (Spark, transformers and MLflow output: {log_path})")
        demo = Demo(config, stages)
        try:
            demo.synth()
            manifest = demo.prepare()
            rank = demo.lora_rank(len(manifest["tasks"]))
            models = {m: demo.train(m, config.rank if m == "mtl_lora" else rank) for m in METHODS}
            stages.begin("evaluate both on the test split (per-task ROC AUC with bootstrap intervals, MLflow)")
            reports = {m: demo.evaluate(m, path) for m, path in models.items()}
            decisions = demo.promote(models)
            scored = demo.score()
        finally:
            demo.stop()
        from evaluation.tracking import tracking_uri, ui_links

        stages.say("done: the table below, then where everything is")
        challenge = decisions[METHODS[-1]]
        names = {d["candidate"]["version"]: m for m, d in decisions.items()}
        print(file=out)
        print(summary_table(reports, challenge, names), file=out)
        print("\n" + champion_line(challenge, names, reports), file=out)
        for method, decision in decisions.items():
            print(f"gate, {method} (version {decision['candidate']['version']}): {decision['status']}", file=out)
            for reason in decision["reasons"]:
                print(f"  - {reason}", file=out)
        print(f"\nscores: {work / 'scores'}/scores/ ({scored['scored']:,} scored, {scored['rejected_rows']:,} "
              f"rejected: {json.dumps(scored['rejected'])}; summary.json)", file=out)
        print("  scored by: " + ", ".join(f"version {v} ({names.get(v, 'routed')}) {n:,} rows"
                                          for v, n in rows_by_source(work / "scores").items()), file=out)
        print(f"reports: {work / 'reports'}/ ; gate decisions: {work}/promotion-*.json", file=out)
        print(f"plots and runs: MLflow at {tracking_uri()}, experiment ads-relevance (evaluation runs hold plots/); "
              "open it with `make mlflow-ui` and compare the two evaluation runs:", file=out)
        for link in ui_links():
            print(f"  {link}", file=out)
        print(f"full log: {log_path}", file=out)
    return 0
