"""Turning what a user passes as --model (a directory, runs:/ or models:/ URI) into a local model
directory holding adsrel_model.json."""

from __future__ import annotations

from pathlib import Path

from models.artifact import META_FILE
from pipelines.errors import UserError

URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def find_model_dir(root: Path) -> Path:
    if (root / META_FILE).is_file():
        return root
    found = sorted(root.rglob(META_FILE))
    if not found:
        raise UserError(f"{root} holds no adsrel model ({META_FILE} not found)")
    return found[0].parent


def resolve_model_dir(uri_or_dir: str) -> Path:
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
