"""Raw review text in, sentiment out: the tokenizer, padding and model of one training run.

Serving runs the very functions the pipeline ran (`text.encode`, `pad.pad_sequences`,
`training.predict_logits`), so a review gets the same probability from the CLI, the Python API,
the MLflow server and the evaluate stage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tokenizers import Tokenizer

from rnn_sentiment import checkpoint, text
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import PadParams
from rnn_sentiment.stages.pad import pad_sequences
from rnn_sentiment.training import choose_device, predict_logits

BATCH_SIZE = 256
THRESHOLD = 0.5
# `models:/...`, `runs:/...`, `file:///...`, `s3://...`; a single letter is a Windows drive.
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


@dataclass(frozen=True)
class Prediction:
    probability: float  # of a positive review
    label: str  # "positive" or "negative"


class Scorer(Protocol):
    """What `rnn-sentiment predict` needs from a model, wherever it was loaded from."""

    def predict(self, reviews: Sequence[str]) -> list[Prediction]: ...


class Predictor:
    """Predicts the sentiment of raw reviews with a trained model and its own tokenizer."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        pad: PadParams,
        threshold: float = THRESHOLD,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.pad = pad
        self.threshold = threshold
        self.device = next(model.parameters()).device

    @classmethod
    def from_files(
        cls,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        threshold: float = THRESHOLD,
    ) -> Predictor:
        device = choose_device()
        trained = checkpoint.load(model_path, device)
        tokenizer_path = Path(tokenizer_path)
        if not tokenizer_path.is_file():
            raise UserError(f"no tokenizer at {tokenizer_path}: run `dvc repro` to produce it")
        return cls(trained.model, text.load(str(tokenizer_path)), trained.pad, threshold)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], threshold: float = THRESHOLD) -> Predictor:
        """Load the train stage's output folder (`model.pt` + `tokenizer.json`)."""
        directory = Path(directory)
        return cls.from_files(
            directory / checkpoint.MODEL_FILE, directory / checkpoint.TOKENIZER_FILE, threshold
        )

    def predict_proba(self, reviews: Sequence[str]) -> np.ndarray:
        """Probability that each review is positive."""
        validate(reviews)
        if len(reviews) == 0:  # `not reviews` is ambiguous for an array
            return np.empty(0, dtype=np.float32)
        token_ids = text.encode(self.tokenizer, reviews)
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter(
            (i for ids in token_ids for i in ids), dtype=np.int64, count=int(offsets[-1])
        )
        padded, _ = pad_sequences(values, offsets, self.pad)
        logits = predict_logits(
            self.model, torch.from_numpy(padded.astype(np.int64)), BATCH_SIZE, self.device
        )
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def predict(self, reviews: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(float(p), "positive" if p >= self.threshold else "negative")
            for p in self.predict_proba(reviews)
        ]


@dataclass(frozen=True)
class PyfuncPredictor:
    """A model logged to MLflow, scored through its pyfunc: exactly what `mlflow models serve` runs.

    `model` is an `mlflow.pyfunc.PyFuncModel`, typed loosely so this module needs no MLflow.
    """

    model: Any

    def predict(self, reviews: Sequence[str]) -> list[Prediction]:
        if not reviews:  # MLflow's schema check refuses an empty batch
            return []
        frame = self.model.predict(list(reviews))
        pairs = zip(frame["probability"], frame["label"], strict=True)
        return [Prediction(float(probability), str(label)) for probability, label in pairs]


def validate(reviews: Sequence[object]) -> None:
    """Refuse what is not a review, naming the first offender and its position (1-based)."""
    if isinstance(reviews, str):
        raise UserError("expected a list of reviews, got a single string: wrap it in a list")
    for position, review in enumerate(reviews, start=1):
        if review is None:
            raise UserError(f"review {position} is null: send the review's text as a string")
        if not isinstance(review, str):
            raise UserError(
                f"review {position} is {type(review).__name__}, not text: send it as a string"
            )
        if not review.strip():
            raise UserError(f"review {position} is empty: send some text to classify")


def load_scorer(model: str) -> Scorer:
    """The train stage's folder loads directly (no MLflow import); a URI, or a folder holding an
    `MLmodel` file, loads through MLflow from the project's store."""
    if URI_SCHEME.match(model) or (Path(model) / "MLmodel").is_file():
        from rnn_sentiment import tracking

        return PyfuncPredictor(tracking.load_pyfunc(model))
    if not Path(model).is_dir():
        raise UserError(
            f"no model folder {model}: run `dvc repro` to train one, or pass --model with a "
            "folder or an MLflow model URI such as models:/rnn-sentiment@champion"
        )
    return Predictor.from_dir(model)
