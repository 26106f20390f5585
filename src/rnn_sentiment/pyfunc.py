"""The model inside MLflow's pyfunc, both ways: `SentimentPyfunc`, which MLflow loads to serve a
logged model, and `PyfuncPredictor`, which scores reviews through a loaded one.

The logged model holds the checkpoint, the tokenizer and the threshold as plain files; loading it
runs `ENTRY_SCRIPT`, which builds `SentimentPyfunc` from this package, so nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema

from rnn_sentiment.errors import UserError
from rnn_sentiment.serving import THRESHOLD, Prediction, Predictor, read_threshold

ENTRY_SCRIPT = """\
from mlflow.models import set_model

from rnn_sentiment.pyfunc import SentimentPyfunc

set_model(SentimentPyfunc())
"""
# The names under which the model's files are logged, as `load_context` finds them.
MODEL, TOKENIZER, THRESHOLD_ARTIFACT = "model", "tokenizer", "threshold"

# The reviews' input schema is `Any`, not `string`: with `string`, MLflow's server casts JSON
# null, numbers and booleans to the strings "None", "3", "True" before the model sees them, and
# they would be scored as text. Untouched, they reach `serving.validate`, which refuses them with
# a message naming the review, answered as HTTP 400.
REVIEWS_SCHEMA = Schema([ColSpec(AnyType())])


def signature(input_example: list[str], outputs: pd.DataFrame) -> ModelSignature:
    return ModelSignature(REVIEWS_SCHEMA, infer_signature(input_example, outputs).outputs)


def as_frame(probabilities: np.ndarray, threshold: float) -> pd.DataFrame:
    labels = np.where(probabilities >= threshold, "positive", "negative")
    return pd.DataFrame({"probability": probabilities, "label": labels})


def as_reviews(model_input: Any) -> list[Any]:
    """Accept what MLflow hands a pyfunc: a string, a list, an array, a Series, or a frame (its
    `text` column, else its first: MLflow's check against the one-input signature keeps only the
    first). Missing values become None, for `validate` to name."""
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        model_input = model_input[column]
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.Series | np.ndarray):
        model_input = model_input.tolist()
    if not isinstance(model_input, list | tuple):
        raise UserError(f"expected a list of reviews, got {type(model_input).__name__}")
    return [None if pd.api.types.is_scalar(x) and pd.isna(x) else x for x in model_input]


class SentimentPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: raw review strings in, `probability` and `label` per review out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the checkpoint and tokenizer, labelling at the threshold the evaluate stage last
        recorded in the model's artifacts (a model logged before thresholds travelled: 0.5)."""
        precision = (context.model_config or {}).get("precision", "auto")
        threshold_file = context.artifacts.get(THRESHOLD_ARTIFACT)
        threshold = read_threshold(threshold_file) if threshold_file else None
        self.predictor = Predictor.from_files(
            context.artifacts[MODEL],
            context.artifacts[TOKENIZER],
            THRESHOLD if threshold is None else threshold,
            precision=precision,
        )

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Score the reviews MLflow hands over, after checking them against the signature.

        `pd.DataFrame` is the one input hint MLflow neither validates nor builds a signature from
        (an unannotated `predict` gets a warning on every import); the signature stays the one
        `log_model` writes, and `as_reviews` still takes any list-like input.
        """
        try:
            probabilities = self.predictor.predict_proba(as_reviews(model_input))
        except UserError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        return as_frame(probabilities, self.predictor.threshold)


@dataclass(frozen=True)
class PyfuncPredictor:
    """A logged model, scored through its pyfunc: exactly what `mlflow models serve` runs."""

    model: mlflow.pyfunc.PyFuncModel

    def predict(self, reviews: Sequence[str]) -> list[Prediction]:
        if not reviews:  # MLflow's schema check refuses an empty batch
            return []
        frame = self.model.predict(list(reviews))
        pairs = zip(frame["probability"], frame["label"], strict=True)
        return [Prediction(float(probability), str(label)) for probability, label in pairs]
