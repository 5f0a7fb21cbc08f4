"""`adsrel promote`: evaluate a candidate and the current champion on the same shards and move the
registry aliases of ``ads-relevance`` as the gate (evaluation/gate.py) decides.

1. The data: the manifest of SHARDS (its digest) and the tasks with rows in the split.
2. The candidate becomes a registered version: ``models:/ads-relevance/N`` and
   ``models:/ads-relevance@alias`` are used as they are; a model directory, a ``runs:/`` URI or another
   ``models:/`` URI (e.g. the logged model ``models:/m-...`` of a run) is
   looked up by its model digest (tag ``adsrel.model_digest``, sha256 of adsrel_model.json +
   adapter.safetensors) and registered (evaluation.registry.log_model) only when no version has it.
3. Candidate and champion (alias ``champion``) are evaluated on the same split
   (evaluation.evaluate). A report is reused when a finished evaluation run of the experiment
   (tag ``stage=evaluate``) has the same ``adsrel.model_digest``, ``adsrel.manifest_digest`` and
   ``adsrel.split`` and holds ``evaluation_report.json``; new evaluations are logged by
   ``log_evaluation`` (the candidate's with the champion's report, for the comparison plot).
4. Only once both evaluations succeeded: alias ``challenger`` on the candidate, ``champion`` too when
   the gate promotes; tags ``adsrel.gate.decision`` (promoted / kept), ``adsrel.gate.reason`` (the
   first reason), ``adsrel.gate.champion_version`` (the champion it was compared with, or none) and
   ``adsrel.gate.manifest_digest`` on the candidate version; the decision JSON as the artifact
   ``promotion/decision-v<candidate>-vs-<champion>.json`` of the candidate's evaluation run (and in
   ``report_path`` when asked).

An exception in an evaluation (or an incomplete report) raises :class:`EvaluationFailed` (exit 1), a
champion that another promotion moved meanwhile :class:`ChampionMoved` (exit 1), a model or data the
evaluation refuses raises UserError (exit 2): all before any alias moves. Running
the same candidate on the same data again registers nothing, evaluates nothing and leaves the aliases
as they are.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.gate import Decision, GatePolicy, decide
from evaluation.registry import (
    CHALLENGER,
    CHAMPION,
    REGISTERED_MODEL,
    log_model,
    parse_models_uri,
    registered_version,
    resolve_model_dir,
)
from evaluation.tracking import EVAL_IDENTITY_TAGS, MODEL_DIGEST_TAG, REPORT_ARTIFACT
from evaluation.tracking import experiment_id as mlflow_experiment_id
from features.errors import UserError
from features.shards import MANIFEST, TEXT_COLUMNS, manifest_digest, read_manifest, read_table, split_files
from models.artifact import ArtifactError, model_digest, read_metadata

GATE_TAGS = ("adsrel.gate.decision", "adsrel.gate.reason", "adsrel.gate.champion_version",
             "adsrel.gate.manifest_digest")

# (model URI, shards directory, split) -> report dict (the shape of evaluation.evaluate.evaluate_model) or an
# evaluation.evaluate.Evaluation (report + scored rows, for the plots)
Evaluator = Callable[[str, Path, str], Any]


class EvaluationFailed(Exception):
    """An evaluation raised or returned an incomplete report: nothing was promoted (exit code 1)."""

    exit_code = 1


class ChampionMoved(EvaluationFailed):
    """The champion alias moved while this promotion evaluated (another promotion got there first):
    the decision compared the candidate with a model that is no longer the champion, so no alias
    moves (exit code 1); running it again compares with the new champion."""


@dataclass
class Version:
    version: str
    model_dir: Path
    digest: str
    registered_now: bool = False

    @property
    def uri(self) -> str:
        return f"models:/{REGISTERED_MODEL}/{self.version}"


@dataclass
class PromotionResult:
    status: str  # promoted, kept, already_champion
    decision: Decision
    candidate: Version
    champion_before: str | None
    champion_after: str | None
    data: dict[str, Any]
    policy: GatePolicy
    evaluation_runs: dict[str, str | None] = field(default_factory=dict)
    reports: dict[str, dict | None] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 3 if self.status == "kept" else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "promote": self.decision.promote,
            "reasons": self.decision.reasons,
            "candidate": {"version": self.candidate.version, "model_uri": self.candidate.uri,
                          "model_digest": self.candidate.digest, "registered_now": self.candidate.registered_now},
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "macro": self.decision.macro,
            "per_task": self.decision.per_task,
            "data": self.data,
            "policy": self.policy.to_dict(),
            "evaluation_runs": self.evaluation_runs,
        }


def default_evaluator(bootstrap: int = 200) -> Evaluator:
    def evaluate(model: str, shards: Path, split: str):
        from evaluation.evaluate import run_evaluation

        return run_evaluation(model, shards, split=split, bootstrap=bootstrap)

    return evaluate


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _alias_version(client, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(REGISTERED_MODEL, alias).version)
    except MlflowException:
        return None


def _versions_with_digest(client, digest: str) -> list[str]:
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    return sorted((str(v.version) for v in versions if (v.tags or {}).get(MODEL_DIGEST_TAG) == digest), key=int)


def _registered(client, version: str) -> Version:
    model_dir = resolve_model_dir(f"models:/{REGISTERED_MODEL}/{version}")
    digest = model_digest(model_dir)
    tags = client.get_model_version(REGISTERED_MODEL, version).tags or {}
    if tags.get(MODEL_DIGEST_TAG) != digest:
        client.set_model_version_tag(REGISTERED_MODEL, version, MODEL_DIGEST_TAG, digest)
    return Version(version, model_dir, digest)


def input_example(model_dir: Path, shards: Path, split: str):
    """A real row of ``split`` for a task the model knows: the registered pyfunc's input example."""
    known = {t["name"] for t in read_metadata(model_dir).get("tasks") or []}
    for task, paths in split_files(shards, split).items():
        if task in known:
            return read_table(paths[:1], TEXT_COLUMNS).slice(0, 1).to_pandas().assign(task=task)
    return None


def resolve_candidate(candidate: str, client, example: Callable[[Path], Any] | None = None) -> Version:
    """The registered version of ``candidate`` (registering a directory or run not registered yet, with
    ``example(model_dir)`` as its input example)."""
    parts = parse_models_uri(candidate)
    if parts is not None and parts.name == REGISTERED_MODEL:
        return _registered(client, registered_version(candidate, client))

    model_dir = resolve_model_dir(candidate)  # a directory, runs:/ or another models:/ URI (a logged model)
    try:
        read_metadata(model_dir)
        digest = model_digest(model_dir)
    except (ArtifactError, OSError) as exc:
        raise UserError(f"{candidate} is not a usable adsrel model: {exc}") from None
    known = _versions_with_digest(client, digest)
    if known:
        return Version(known[0], model_dir, digest)
    ref = log_model(model_dir, input_example=example(model_dir) if example else None)
    return Version(str(ref.version), model_dir, digest, registered_now=True)


def _cached_report(client, experiment_id: str, digest: str, data_digest: str, split: str):
    """The report of a finished evaluation run of the same model digest, manifest digest and split."""
    import mlflow

    values = {"stage": "evaluate", **dict(zip(EVAL_IDENTITY_TAGS, (digest, data_digest, split), strict=True))}
    filters = " and ".join(f"tags.`{k}` = '{v}'" for k, v in values.items())
    runs = client.search_runs([experiment_id], filter_string=f"{filters} and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"])
    for run in runs:
        try:
            report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{REPORT_ARTIFACT}")
        except Exception:  # noqa: BLE001 - a run without a readable report is not a cache entry
            continue
        if isinstance(report, dict) and report.get("complete") is True:
            return report, run.info.run_id
    return None


@dataclass
class _Evaluated:
    report: dict
    run_id: str | None  # None until logged
    scored: Any = None
    scorer: Any = None


@contextmanager
def _known_tasks_view(shards: Path, split: str, known: set[str]):
    """``shards`` itself, or, when the split holds tasks the model does not know (a segment added after
    it was trained), a view of the same manifest (same bytes: same digest) with only the known tasks'
    directories. The report then lacks the others: the gate treats them as new tasks of the candidate
    (floors only) or, for a candidate, as missing (never promoted)."""
    tasks = split_files(shards, split)
    unknown = sorted(set(tasks) - known)
    if not unknown:
        yield shards, []
        return
    with tempfile.TemporaryDirectory(prefix="adsrel-promote-") as tmp:
        view = Path(tmp)
        shutil.copyfile(shards / MANIFEST, view / MANIFEST)
        base = view / "shards" / f"split={split}"
        base.mkdir(parents=True)
        for task in sorted(set(tasks) & known):
            source = (shards / "shards" / f"split={split}" / f"task={task}").resolve()
            (base / f"task={task}").symlink_to(source, target_is_directory=True)
        yield view, unknown


def _evaluate(client, experiment_id: str, evaluate: Evaluator, version: Version, shards: Path,
              data_digest: str, split: str, role: str) -> _Evaluated:
    cached = _cached_report(client, experiment_id, version.digest, data_digest, split)
    if cached is not None:
        return _Evaluated(*cached)
    known = {t["name"] for t in read_metadata(version.model_dir).get("tasks") or []}
    try:
        with _known_tasks_view(shards, split, known) as (view, not_evaluated):
            result = evaluate(version.uri, view, split)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of an evaluation blocks promotion
        first = (str(exc).splitlines() or [""])[0]
        raise EvaluationFailed(f"evaluation of the {role} (version {version.version}) failed: "
                               f"{type(exc).__name__}: {first}") from exc
    report, scored, scorer = ((result.report, result.scored, result.scorer) if hasattr(result, "report")
                              else (result, None, None))
    if not isinstance(report, dict) or report.get("complete") is not True:
        raise EvaluationFailed(f"evaluation of the {role} (version {version.version}) is incomplete")
    if not_evaluated and isinstance(report.get("data"), dict):
        report["data"].update(shards=str(shards.resolve()), tasks_not_evaluated=not_evaluated)
    digest = (report.get("model") or {}).get("digest")
    if digest is not None and digest != version.digest:
        raise EvaluationFailed(f"evaluation of the {role} (version {version.version}) measured another model "
                               f"({digest} != {version.digest})")
    return _Evaluated(report, None, scored, scorer)


def _log(evaluated: _Evaluated, champion: _Evaluated | None) -> str:
    """Record a new evaluation (evaluation.evaluate.log_evaluation: metrics, report, table, plots)."""
    if evaluated.run_id is None:
        from evaluation.evaluate import log_evaluation

        try:
            evaluated.run_id = log_evaluation(evaluated.report, scored=evaluated.scored, model=evaluated.scorer,
                                              champion_report=champion.report if champion else None)
        except Exception as exc:  # noqa: BLE001 - an evaluation that cannot be recorded cannot be acted on
            first = (str(exc).splitlines() or [""])[0]
            uri = (evaluated.report.get("model") or {}).get("uri")
            raise EvaluationFailed(f"recording the evaluation of {uri} failed: {type(exc).__name__}: {first}") from exc
    return evaluated.run_id


@contextmanager
def _writing_report(report_path: str | Path):
    """An OSError while writing ``report_path`` (or making its directory) as a UserError (exit 2)."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write the report {report_path}: {exc.strerror or exc}") from None


def _split_data(shards: Path, split: str, report_path: str | Path | None) -> dict[str, Any]:
    """The data judged (shards, manifest digest, split, its tasks with rows); makes the report's directory."""
    manifest = read_manifest(shards)
    if report_path:
        with _writing_report(report_path):
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    counts = manifest["counts"].get(split)
    if not counts:
        raise UserError(f"{shards} has no rows in split {split!r}")
    expected = sorted(t for t, c in counts.items() if int(c.get("rows", 0)) > 0)
    return {"shards": str(shards.resolve()), "manifest_digest": manifest_digest(shards), "split": split,
            "tasks": expected}


def _evaluate_both(client, experiment_id: str, evaluate: Evaluator, version: Version, champion_version: str | None,
                   shards: Path, data: dict[str, Any]) -> tuple[_Evaluated, _Evaluated | None]:
    """The candidate's evaluation, then the champion's (None: no champion, or the candidate is the champion)."""
    def evaluated(model: Version, role: str) -> _Evaluated:
        return _evaluate(client, experiment_id, evaluate, model, shards, data["manifest_digest"], data["split"], role)

    candidate_eval = evaluated(version, "candidate")
    if champion_version is None or champion_version == version.version:
        return candidate_eval, None
    return candidate_eval, evaluated(_registered(client, champion_version), "champion")


def _gate(candidate_eval: _Evaluated, champion_eval: _Evaluated | None, version: Version,
          champion_version: str | None, policy: GatePolicy, expected: list[str]) -> tuple[str, Decision]:
    """The promotion status (promoted, kept or already_champion) and the gate's decision."""
    decision = decide(candidate_eval.report, champion_eval.report if champion_eval else None, policy, expected)
    if champion_version == version.version:
        return "already_champion", Decision(True, [f"version {version.version} is already the champion"],
                                            decision.per_task, decision.macro)
    return ("promoted" if decision.promote else "kept"), decision


def _log_evaluations(candidate_eval: _Evaluated, champion_eval: _Evaluated | None) -> dict[str, str | None]:
    """Record the new evaluations (the champion's, then the candidate's with it): their run ids by role."""
    runs: dict[str, str | None] = {"candidate": None, "champion": None}
    if champion_eval is not None:
        runs["champion"] = _log(champion_eval, None)
    runs["candidate"] = _log(candidate_eval, champion_eval)
    return runs


def _move_aliases(client, version: Version, champion_version: str | None, status: str, decision: Decision,
                  data_digest: str) -> None:
    """Alias challenger (and champion when promoted) and the gate tags on the candidate, unless the
    champion moved since it was read (:class:`ChampionMoved`)."""
    # both evaluations succeeded: from here on the registry changes, unless the decision is stale.
    # MLflow has no lock: this narrows the race between two promotions to the alias updates below.
    now = _alias_version(client, CHAMPION)
    if now != champion_version:
        raise ChampionMoved(f"the champion moved from version {champion_version or 'none'} to {now or 'none'} "
                            f"while version {version.version} was evaluated: nothing was promoted; run it again "
                            "to compare with the new champion")
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version.version)
    if status == "promoted":
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version.version)
    if status != "already_champion":  # the tags of the decision that made it champion stay
        values = (status, decision.reasons[0][:250] if decision.reasons else "", champion_version or "none",
                  data_digest)
        for key, value in zip(GATE_TAGS, values, strict=True):
            client.set_model_version_tag(REGISTERED_MODEL, version.version, key, value)


def _record_decision(client, result: PromotionResult, run_id: str, report_path: str | Path | None) -> None:
    """The decision JSON as an artifact of the candidate's evaluation run, and in ``report_path`` if given."""
    payload = result.to_dict()
    client.log_dict(run_id, payload,
                    f"promotion/decision-v{result.candidate.version}-vs-{result.champion_before or 'none'}.json")
    if report_path:
        with _writing_report(report_path):
            Path(report_path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def promote(candidate: str, shards: str | Path, *, policy: GatePolicy | None = None,
            report_path: str | Path | None = None, split: str = "test", evaluate: Evaluator | None = None,
            bootstrap: int = 200) -> PromotionResult:
    """Evaluate ``candidate`` and the champion on ``shards`` and move the aliases as the gate decides."""
    policy = policy or GatePolicy()
    evaluate = evaluate or default_evaluator(bootstrap)
    shards = Path(shards)
    data = _split_data(shards, split, report_path)

    client = _client()
    experiment_id = mlflow_experiment_id()
    version = resolve_candidate(candidate, client, lambda model_dir: input_example(model_dir, shards, split))
    champion_version = _alias_version(client, CHAMPION)

    candidate_eval, champion_eval = _evaluate_both(client, experiment_id, evaluate, version, champion_version,
                                                   shards, data)
    status, decision = _gate(candidate_eval, champion_eval, version, champion_version, policy, data["tasks"])
    runs = _log_evaluations(candidate_eval, champion_eval)
    reports = {"candidate": candidate_eval.report, "champion": champion_eval.report if champion_eval else None}

    _move_aliases(client, version, champion_version, status, decision, data["manifest_digest"])
    champion_after = version.version if status == "promoted" else champion_version
    result = PromotionResult(status, decision, version, champion_version, champion_after, data, policy, runs,
                             reports)
    _record_decision(client, result, runs["candidate"], report_path)
    return result
