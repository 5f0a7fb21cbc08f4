"""The MLflow pyfunc of an adsrel model, logged as models-from-code (this file is the model's code;
no live object is pickled). ``predict`` takes a DataFrame of candidates (query, ad_id, ad_title,
ad_description, display_url, market, vertical; or the ``task`` instead of market and vertical) and
returns a DataFrame of ``score`` (the relevance probability) and ``rejected``: for a row that batch
scoring would reject, a null score and the reason (features.candidates.REASONS), else null. A
request without the columns to score is a 400 with a one-line reason."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

ARTIFACT_KEY = "adsrel_model"


class BadRequest(MlflowException):
    """A request that cannot be scored, answered 400 with its reason alone: MLflow's server rewrites a
    predict error's message to lead with the whole request, which buries the reason, so this message
    does not take the rewrite."""

    def __init__(self, reason: str) -> None:
        self._reason = reason
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    message = property(lambda self: self._reason, lambda self, value: None)


class AdsRelevanceModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from models.routing import load_scorer

        self.scorer = load_scorer(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict | None = None) -> pd.DataFrame:
        try:
            return self.scorer.score_candidates(model_input)
        except (ValueError, KeyError) as exc:  # the reason in the response, not a stack trace
            raise BadRequest(f"adsrel: {exc}") from None


mlflow.models.set_model(AdsRelevanceModel())
