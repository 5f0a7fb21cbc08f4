"""The MLflow pyfunc of an adsrel model, logged as models-from-code (this file is the model's code;
no live object is pickled). ``predict`` takes a DataFrame of query, ad_title, ad_description,
display_url and the task (``task``, or ``market`` + ``vertical``) and returns relevance scores."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

ARTIFACT_KEY = "adsrel_model"


class AdsRelevanceModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from models.scoring import Scorer

        self.scorer = Scorer.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None) -> pd.Series:
        frame = model_input.fillna({"ad_description": "", "display_url": ""}) if len(model_input) else model_input
        return pd.Series(self.scorer.predict(frame), name="score", index=model_input.index)


mlflow.models.set_model(AdsRelevanceModel())
