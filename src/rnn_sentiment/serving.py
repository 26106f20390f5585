"""Raw review text in, sentiment out: the tokenizer, padding and model of one training run.

Serving runs the very functions the pipeline ran (`text.encode`, `pad.pad_sequences`,
`training.predict_logits`), so a review gets the same probability from the CLI, the Python API,
the MLflow server and the evaluate stage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from rnn_sentiment import checkpoint, text
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import PadParams
from rnn_sentiment.stages.pad import pad_sequences
from rnn_sentiment.training import choose_device, predict_logits

BATCH_SIZE = 256


@dataclass(frozen=True)
class Prediction:
    probability: float  # of a positive review
    label: str  # "positive" or "negative"


class Predictor:
    """Predicts the sentiment of raw reviews with a trained model and its own tokenizer."""

    def __init__(
        self, model: torch.nn.Module, tokenizer: Tokenizer, pad: PadParams, threshold: float = 0.5
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
        threshold: float = 0.5,
    ) -> Predictor:
        device = choose_device()
        trained = checkpoint.load(model_path, device)
        tokenizer_path = Path(tokenizer_path)
        if not tokenizer_path.is_file():
            raise UserError(f"no tokenizer at {tokenizer_path}: run `dvc repro` to produce it")
        return cls(trained.model, text.load(str(tokenizer_path)), trained.pad, threshold)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], threshold: float = 0.5) -> Predictor:
        """Load the train stage's output folder (`model.pt` + `tokenizer.json`)."""
        directory = Path(directory)
        return cls.from_files(
            directory / checkpoint.MODEL_FILE, directory / checkpoint.TOKENIZER_FILE, threshold
        )

    def predict_proba(self, reviews: Sequence[str]) -> np.ndarray:
        """Probability that each review is positive."""
        validate(reviews)
        if not reviews:
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


def validate(reviews: Sequence[object]) -> None:
    """Refuse what is not a review, naming the first offender and its position (1-based)."""
    if isinstance(reviews, str):
        raise UserError("expected a list of reviews, got a single string: wrap it in a list")
    for position, review in enumerate(reviews, start=1):
        if review is None:
            raise UserError(f"review {position} is null: send the review's text as a string")
        if not isinstance(review, str):
            raise UserError(
                f"review {position} is a {type(review).__name__}, not text: send a string"
            )
        if not review.strip():
            raise UserError(f"review {position} is empty: send some text to classify")
