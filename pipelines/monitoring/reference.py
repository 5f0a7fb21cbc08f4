"""The reference distribution of a registered version: its scores per segment on the data it was
evaluated on (``score_reference.json`` of its evaluation run, evaluation/evaluate.py), found by the
version's model digest, preferring the data it was promoted on."""

from __future__ import annotations

from typing import Any

from evaluation.registry import REGISTERED_MODEL
from evaluation.tracking import MANIFEST_DIGEST_TAG, MODEL_DIGEST_TAG, REFERENCE_ARTIFACT
from evaluation.tracking import experiment_id as evaluation_experiment

PROMOTED_ON_TAG = "adsrel.gate.manifest_digest"


def version_reference(client, version: str) -> dict[str, Any] | None:
    """The reference of registered ``version`` ({"bins", "tasks": {task: distribution}}), or None when
    no finished evaluation run of its model kept one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_model_version(REGISTERED_MODEL, version).tags or {}
    except MlflowException:
        return None
    digest = tags.get(MODEL_DIGEST_TAG)
    if not digest:
        return None
    runs = client.search_runs([evaluation_experiment()], order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.stage = 'evaluate' and tags.`{MODEL_DIGEST_TAG}` = '{digest}' "
                              "and attributes.status = 'FINISHED'")
    promoted_on = tags.get(PROMOTED_ON_TAG)
    runs = sorted(runs, key=lambda r: r.data.tags.get(MANIFEST_DIGEST_TAG) != promoted_on)  # stable: newest first
    for run in runs:
        try:
            return mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{REFERENCE_ARTIFACT}")
        except Exception:  # noqa: BLE001 - an evaluation logged before references were kept
            continue
    return None
