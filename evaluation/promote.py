"""`adsrel promote`: evaluate a candidate and the current champion on the same shards and move the
registry aliases of ``ads-relevance`` as the gate decides.

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
4. The gate of the policy's rollout decides: ``whole`` (evaluation/gate.py) or ``per_segment``
   (evaluation/segment_gate.py, on the per-row scores of both evaluations). Segments that end up served
   by different versions get a routed version (evaluation/routed_version.py), registered once per digest.
5. Only once both evaluations succeeded: alias ``challenger`` on the candidate, ``champion`` too when
   the gate promotes (on the candidate, or on the routed version); tags ``adsrel.gate.decision``
   (promoted / routed / kept), ``adsrel.gate.reason`` (the first reason), ``adsrel.gate.champion_version``
   (the champion it was compared with, or none) and ``adsrel.gate.manifest_digest`` on the candidate
   version (and the routed one); the decision JSON as the artifact
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.evaluate import evaluation_run_name
from evaluation.gate import Decision, GatePolicy, decide
from evaluation.registry import (
    CHALLENGER,
    CHAMPION,
    REGISTERED_MODEL,
    log_model,
    parse_models_uri,
    registered_version,
    resolve_model_dir,
    versions_with_digest,
)
from evaluation.routed_version import register_routed, sources_of
from evaluation.segment_gate import decide_segments, paired_scores
from evaluation.tracking import (
    EVAL_IDENTITY_TAGS,
    MODEL_DIGEST_TAG,
    MONITORING_EXPERIMENT,
    REPORT_ARTIFACT,
    SCORES_ARTIFACT,
    VERSION_TAG,
    log_day_metrics,
)
from evaluation.tracking import experiment_id as mlflow_experiment_id
from evaluation.version_description import describe
from features.errors import UserError
from features.progress import log
from features.shards import MANIFEST, TEXT_COLUMNS, manifest_digest, read_manifest, read_table, split_files
from models.artifact import ArtifactError, model_digest, read_metadata
from models.routing import is_routed, routing_problem, serving

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
    status: str  # promoted, routed (a routed version is champion), kept, already_champion
    decision: Decision
    routing_before: dict[str, str] | None
    candidate: Version
    champion_before: str | None
    champion_after: str | None
    data: dict[str, Any]
    policy: GatePolicy
    evaluation_runs: dict[str, str | None] = field(default_factory=dict)
    reports: dict[str, dict | None] = field(default_factory=dict)
    routed: dict[str, Any] | None = None  # the routed version made: version, digest, registered_now

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
            "rollout": self.policy.rollout,
            "segments": self.decision.segments,
            "routing_before": self.routing_before,
            "routing_after": self.decision.routing or None,
            "routed": self.routed,
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
    known = versions_with_digest(client, digest)
    if known:
        return Version(known[0], model_dir, digest)
    ref = log_model(model_dir, input_example=example(model_dir) if example else None)
    return Version(str(ref.version), model_dir, digest, registered_now=True)


def _cached_report(client, experiment_id: str, digest: str, data_digest: str, split: str, need_scores: bool):
    """The report of a finished evaluation run of the same model digest, manifest digest and split, its
    run id and (``need_scores``: a run without them is no cache entry) its per-row scores."""
    import mlflow
    import pandas as pd

    values = {"stage": "evaluate", **dict(zip(EVAL_IDENTITY_TAGS, (digest, data_digest, split), strict=True))}
    filters = " and ".join(f"tags.`{k}` = '{v}'" for k, v in values.items())
    runs = client.search_runs([experiment_id], filter_string=f"{filters} and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"])
    for run in runs:
        try:
            report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{REPORT_ARTIFACT}")
        except Exception:  # noqa: BLE001 - a run without a readable report is not a cache entry
            continue
        if not (isinstance(report, dict) and report.get("complete") is True):
            continue
        scored = None
        if need_scores:
            try:
                scored = pd.read_parquet(mlflow.artifacts.download_artifacts(
                    f"runs:/{run.info.run_id}/{SCORES_ARTIFACT}"))
            except Exception:  # noqa: BLE001 - an evaluation logged before scores were kept
                continue
        return report, run.info.run_id, scored
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


def _name_for_version(client, run_id: str, report: dict, version: str) -> None:
    """An evaluation made of a model directory and reused for its registered version (the demo's, a DAG's
    evaluate task): tagged ``adsrel.version`` and named for the version, as a new one would be."""
    if client.get_run(run_id).data.tags.get(VERSION_TAG) != version:
        client.set_tag(run_id, VERSION_TAG, version)
        client.update_run(run_id, name=evaluation_run_name(report["model"], report["data"], version))


def _evaluate(client, experiment_id: str, evaluate: Evaluator, version: Version, shards: Path,
              data_digest: str, split: str, role: str, need_scores: bool) -> _Evaluated:
    cached = _cached_report(client, experiment_id, version.digest, data_digest, split, need_scores)
    if cached is not None:
        _name_for_version(client, cached[1], cached[0], version.version)
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
    if need_scores and scored is None:
        raise EvaluationFailed(f"evaluation of the {role} (version {version.version}) returned no per-row scores: "
                               "the per-segment rollout pairs them")
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


def _evaluate_both(client, experiment_id: str, evaluate: Evaluator, version: Version, champion: Version | None,
                   shards: Path, data: dict[str, Any], need_scores: bool) -> tuple[_Evaluated, _Evaluated | None]:
    """The candidate's evaluation, then the champion's (None: no champion, or the candidate is the champion)."""
    def evaluated(model: Version, role: str) -> _Evaluated:
        return _evaluate(client, experiment_id, evaluate, model, shards, data["manifest_digest"], data["split"], role,
                         need_scores)

    candidate_eval = evaluated(version, "candidate")
    if champion is None or champion.version == version.version:
        return candidate_eval, None
    return candidate_eval, evaluated(champion, "champion")


def _gate(candidate_eval: _Evaluated, champion_eval: _Evaluated | None, version: Version,
          champion: Version | None, before: dict[str, str], policy: GatePolicy,
          expected: list[str]) -> tuple[str, Decision]:
    """The promotion status (promoted, routed, kept or already_champion) and the gate's decision, in the
    policy's rollout; ``before``: the champion's routing (segment -> version serving it), empty without one."""
    champion_report = champion_eval.report if champion_eval else None
    if champion is not None and champion.version == version.version:
        decision = decide(candidate_eval.report, None, policy, expected)
        return "already_champion", Decision(True, [f"version {version.version} is already the champion"],
                                            decision.per_task, decision.macro)
    if policy.rollout == "whole":
        decision = decide(candidate_eval.report, champion_report, policy, expected)
    else:
        decision = _decide_segments(candidate_eval, champion_eval, version, before, policy, expected)
    serves = sorted(t for t, v in before.items() if v == version.version)
    if not decision.promote and serves and policy.rollout == "per_segment":  # a re-run of what made the champion
        return "already_champion", Decision(True, [f"version {version.version} already serves {', '.join(serves)} "
                                                   f"in the champion (version {champion.version}); no segment "
                                                   "changes version"], segments=decision.segments,
                                            routing=decision.routing)
    if not decision.promote:
        return "kept", decision
    routes_all = all(v == version.version for v in decision.routing.values())
    if policy.rollout == "per_segment" and not routes_all:
        problem = routing_problem(decision.routing, sources_of(_made_of(version, champion)))
        if problem:  # e.g. a student of fewer blocks against a full-depth champion: one model or the other
            whole = decide(candidate_eval.report, champion_report, policy, expected)
            whole.reasons.insert(0, f"the segments cannot be split between versions, decided as a whole: {problem}")
            return ("promoted" if whole.promote else "kept"), whole
    return ("promoted" if policy.rollout == "whole" or routes_all else "routed"), decision


def _made_of(version: Version, champion: Version | None) -> dict[str, Path]:
    """What a routed champion could be made of: the candidate and the champion (version -> model directory)."""
    return {version.version: version.model_dir, **({champion.version: champion.model_dir} if champion else {})}


def _decide_segments(candidate_eval: _Evaluated, champion_eval: _Evaluated | None, version: Version,
                     before: dict[str, str], policy: GatePolicy, expected: list[str]) -> Decision:
    """The per-segment decision, its routing over the candidate's task map: a segment of it without test
    rows keeps its version (the candidate's, if none serves it); one only the champion knows is dropped."""
    paired = pd.DataFrame(columns=["task", "label", "candidate", "serving"])
    if champion_eval is not None:
        try:
            paired = paired_scores(candidate_eval.scored, champion_eval.scored)
        except ValueError as exc:
            raise EvaluationFailed(f"cannot pair the candidate's and the champion's scores: {exc}") from None
    decision = decide_segments(candidate_eval.report, champion_eval.report if champion_eval else None, policy,
                               expected, candidate_version=version.version, serving=before, paired=paired)
    if decision.promote:
        tasks = [t["name"] for t in read_metadata(version.model_dir).get("tasks") or []]
        decision.routing = {t: decision.routing.get(t, version.version) for t in tasks}
    return decision


def _log_evaluations(candidate_eval: _Evaluated, champion_eval: _Evaluated | None) -> dict[str, str | None]:
    """Record the new evaluations (the champion's, then the candidate's with it): their run ids by role."""
    runs: dict[str, str | None] = {"candidate": None, "champion": None}
    if champion_eval is not None:
        runs["champion"] = _log(champion_eval, None)
    runs["candidate"] = _log(candidate_eval, champion_eval)
    return runs


def _move_aliases(client, version: Version, champion_version: str | None, status: str, decision: Decision,
                  data_digest: str, champion_after: str | None, report: dict[str, Any]) -> None:
    """Alias challenger on the candidate, champion on ``champion_after`` (the candidate or the routed
    version) when it changes, and the gate tags on both, unless the champion moved since it was read
    (:class:`ChampionMoved`)."""
    # both evaluations succeeded: from here on the registry changes, unless the decision is stale.
    # MLflow has no lock: this narrows the race between two promotions to the alias updates below.
    _champion_unmoved(client, champion_version, version)
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version.version)
    if status in ("promoted", "routed"):
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, champion_after)
    if status != "already_champion":  # the tags of the decision that made it champion stay
        values = (status, decision.reasons[0][:250] if decision.reasons else "", champion_version or "none",
                  data_digest)
        for target in dict.fromkeys((version.version, champion_after if status == "routed" else version.version)):
            for key, value in zip(GATE_TAGS, values, strict=True):
                client.set_model_version_tag(REGISTERED_MODEL, target, key, value)
        meta = read_metadata(version.model_dir)
        if not is_routed(meta):  # what the version is, its test quality and this decision, on the registry page
            client.update_model_version(REGISTERED_MODEL, version.version, description=describe(
                meta, report, (status, decision.reasons, champion_version)))


def _champion_unmoved(client, champion_version: str | None, version: Version) -> None:
    """Raise :class:`ChampionMoved` when the champion is no longer the one the decision was made against."""
    now = _alias_version(client, CHAMPION)
    if now != champion_version:
        raise ChampionMoved(f"the champion moved from version {champion_version or 'none'} to {now or 'none'} "
                            f"while version {version.version} was evaluated: nothing was promoted; run it again "
                            "to compare with the new champion")


def _routed_champion(client, decision: Decision, version: Version, champion: Version | None, data: dict[str, Any],
                     shards: Path) -> dict[str, Any]:
    """The routed version serving ``decision.routing`` (registered unless one has the same digest), made only
    while the champion is still the one decided against."""
    _champion_unmoved(client, champion.version if champion else None, version)
    routed, digest, now = register_routed(
        client, decision.routing, _made_of(version, champion), task_map_of=version.version, data=data,
        segments=decision.segments,
        find_version=lambda d: next(iter(versions_with_digest(client, d)), None),
        example=lambda model_dir: input_example(model_dir, shards, data["split"]))
    return {"version": routed, "digest": digest, "registered_now": now}


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
    champion = _registered(client, champion_version) if champion_version else None
    before = serving(champion.model_dir, champion.version) if champion else {}
    if (policy.rollout == "per_segment" and version.version != champion_version
            and is_routed(read_metadata(version.model_dir))):
        raise UserError(f"version {version.version} is a routed version: the per-segment rollout takes a trained "
                        "model as candidate (roll back by moving the alias instead)")

    candidate_eval, champion_eval = _evaluate_both(client, experiment_id, evaluate, version, champion, shards, data,
                                                   need_scores=policy.rollout == "per_segment")
    status, decision = _gate(candidate_eval, champion_eval, version, champion, before, policy, data["tasks"])
    runs = _log_evaluations(candidate_eval, champion_eval)
    reports = {"candidate": candidate_eval.report, "champion": champion_eval.report if champion_eval else None}

    routed = _routed_champion(client, decision, version, champion, data, shards) if status == "routed" else None
    champion_after = {"promoted": version.version, "routed": routed and routed["version"]}.get(status,
                                                                                                champion_version)
    _move_aliases(client, version, champion_version, status, decision, data["manifest_digest"], champion_after,
                  candidate_eval.report)
    result = PromotionResult(
        status=status, decision=decision, routing_before=before if champion else None, candidate=version,
        champion_before=champion_version, champion_after=champion_after, data=data, policy=policy,
        evaluation_runs=runs, reports=reports, routed=routed)
    _record_decision(client, result, runs["candidate"], report_path)
    # analysts' records of a decision already made and recorded: a failure here is a warning, not a failed run
    for what, record in (("the segment history", lambda: _log_segment_history(client, experiment_id,
                                                                               runs["candidate"], champion_after)),
                         ("the champion's weekly quality", lambda: _log_champion_quality(client, result))):
        try:
            record()
        except Exception as exc:  # noqa: BLE001 - any store or plotting error
            reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
            log("promote", f"warning: could not log {what}: {reason}")
    return result


def _log_segment_history(client, experiment_id: str, run_id: str, champion: str | None) -> None:
    """Every segment across the last versions (evaluation/segment_history.py), as a table and a plot of
    the candidate's evaluation run, under promotion/."""
    from evaluation.plots import save
    from evaluation.segment_history import history_figure, history_table, version_scores

    scores = version_scores(client, experiment_id)
    if not scores:
        return
    client.log_text(run_id, history_table(scores, champion), "promotion/segments_by_version.md")
    with tempfile.TemporaryDirectory(prefix="adsrel-history-") as tmp:
        path = save(history_figure(scores, champion), Path(tmp) / "segments_by_version.png")
        client.log_artifact(run_id, str(path), "promotion")


def _log_champion_quality(client, result: PromotionResult) -> None:
    """The champion's test ROC AUC per segment on this promotion's data (the fresh data of the week), as
    metrics ``champion/<task>/roc_auc`` at today's step in the monitoring experiment: one point per
    champion version and data, so an analyst charts how the serving model holds up week by week."""
    import mlflow

    version = result.champion_before or result.candidate.version
    report = result.reports.get("champion") or (result.reports.get("candidate")
                                                if version == result.candidate.version else None)
    if report is None:
        return
    experiment = mlflow_experiment_id(MONITORING_EXPERIMENT)
    tags = {"stage": "champion_quality", "adsrel.champion_version": str(version),
            "adsrel.manifest_digest": result.data["manifest_digest"]}
    seen = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    if client.search_runs([experiment], filter_string=seen, max_results=1):
        return
    metrics = {f"champion/{task}/roc_auc": float(m["roc_auc"]) for task, m in report["tasks"].items()
               if m.get("roc_auc") is not None}
    if report["macro"].get("roc_auc") is not None:
        metrics["champion/macro/roc_auc"] = float(report["macro"]["roc_auc"])
    today = datetime.now(UTC).date()
    with mlflow.start_run(experiment_id=experiment, run_name=f"champion-v{version}-{today}"):
        mlflow.set_tags(tags)
        log_day_metrics(metrics, today)
