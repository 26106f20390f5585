"""Raw review text in, sentiment out: the tokenizer, padding, model and threshold of one training.

Serving runs the very functions the pipeline ran (`text.encode`, on no more of a long review than
the padding keeps; `padding.pad_sequences`, `training.predict_logits`), so a review gets the same
probability from the CLI, the Python API, the MLflow server and the evaluate stage; and the label
the threshold the evaluate stage scored the model with (`threshold.json`), so a review gets the
same label from each of them too.

On a CPU that computes bfloat16 natively (AVX512-BF16 or AMX), serving runs the model in bfloat16
by default: batches run 1.8 times as fast for the default model, and a probability moves by less
than 0.005 (measured on IMDB test reviews, same accuracy). A call of few reviews to a GRU or plain
RNN runs in float32 instead, which is faster there (`FLOAT32_BELOW`). `precision="float32"` gives
the evaluate stage's numbers exactly. `precision="int8"` quantizes the recurrent and dense
layers' weights to 8-bit integers (dynamic quantization, CPU only); docs/serving.md measures what
each choice costs and gives.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np
import torch
from tokenizers import Tokenizer

from rnn_sentiment import checkpoint, text
from rnn_sentiment.errors import UserError
from rnn_sentiment.files import write_json
from rnn_sentiment.padding import pad_sequences
from rnn_sentiment.params import EvaluateParams, PadParams
from rnn_sentiment.training import choose_device, predict_logits

BATCH_SIZE = 256
Precision = Literal["auto", "float32", "bfloat16", "int8"]
# The labels of a model no evaluation has given a threshold: the evaluate stage's default.
THRESHOLD = EvaluateParams().threshold
# Under `auto` on a CPU with native bfloat16, a call of fewer reviews than this runs in float32,
# by recurrent cell. A GRU's or plain RNN's recurrence is torch's loop of small matrix products,
# one per step, which for few rows cost more in bfloat16 than in float32 (CPU time for one review
# of the default GRU: 9.6 ms against 7.1 ms); an LSTM runs oneDNN's fused kernel, faster in
# bfloat16 even for one review. Measured on an AVX512-BF16 CPU; docs/serving.md has the table.
FLOAT32_BELOW = {"rnn": 12, "gru": 3, "lstm": 0}


@dataclass(frozen=True)
class Prediction:
    probability: float  # of a positive review
    label: str  # "positive" or "negative"


class Scorer(Protocol):
    """What `rnn-sentiment predict` needs from a model, wherever it was loaded from."""

    def predict(self, reviews: Sequence[str]) -> list[Prediction]: ...


def hardware_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (AVX512-BF16 or AMX), where the
    speed-ups above were measured. oneDNN also runs bfloat16 on an AVX512 CPU without them
    (`training.native_bfloat16`), by converting to float32: no reason to leave float32 there."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def serving_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype to run the model in: `auto` is bfloat16 where the CPU computes bfloat16 in
    hardware, float32 elsewhere (emulated bfloat16 is slower than float32, and GPUs are fast
    enough); but see `FLOAT32_BELOW`."""
    if precision not in get_args(Precision):
        raise UserError(
            f"unknown precision '{precision}'; choose one of {', '.join(get_args(Precision))}"
        )
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and hardware_bfloat16() else torch.float32
    if precision == "int8":
        if device.type != "cpu":
            raise UserError(f"precision int8 runs on a CPU only, not {device.type}: use auto")
        return torch.qint8
    return getattr(torch, precision)


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose LSTM, GRU and Linear layers hold int8 weights and compute in int8
    (PyTorch's dynamic quantization: activations quantized on the fly); embeddings and plain RNN
    layers stay float32."""
    layers = {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}
    # torch.ao.quantization announces its move to torchao, which is not a dependency here; the
    # module is still in torch 2.13, and a test fails the day it is gone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), layers, dtype=torch.qint8)


class Predictor:
    """Predicts the sentiment of raw reviews with a trained model and its own tokenizer."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        pad: PadParams,
        threshold: float = THRESHOLD,
        precision: Precision = "auto",
    ):
        self.device = next(model.parameters()).device
        dtype = serving_dtype(precision, self.device)
        # A copy, so that the caller's model keeps its own dtype.
        if dtype == torch.qint8:
            self.model = quantized(model)
        elif dtype == torch.float32:
            self.model = model
        else:
            self.model = copy.deepcopy(model).to(dtype)
        # Where `auto` runs small calls in float32, the float32 weights stay beside the bfloat16
        # copy, in 1.5 times the memory of the float32 weights alone.
        self.float32_below = FLOAT32_BELOW[model.config.cell] if precision == "auto" else 0
        self.float32_model = model if self.float32_below else self.model
        self.tokenizer = tokenizer
        self.pad = pad
        self.threshold = threshold

    @classmethod
    def from_files(
        cls,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        threshold: float = THRESHOLD,
        precision: Precision = "auto",
    ) -> Predictor:
        device = choose_device()
        serving_dtype(precision, device)  # a wrong precision fails before the model loads
        trained = checkpoint.load(model_path, device)
        tokenizer_path = Path(tokenizer_path)
        if not tokenizer_path.is_file():
            raise UserError(f"no tokenizer at {tokenizer_path}: run `dvc repro` to produce it")
        tokenizer = text.load(str(tokenizer_path))
        text.check_vocab_size(
            tokenizer, trained.model.config.vocab_size, tokenizer_path, model_path
        )
        return cls(trained.model, tokenizer, trained.pad, threshold, precision)

    @classmethod
    def from_dir(
        cls,
        directory: str | os.PathLike[str],
        threshold: float | None = None,
        precision: Precision = "auto",
    ) -> Predictor:
        """Load the model folder (`model.pt` + `tokenizer.json`), labelling at `threshold`, else
        at the one the evaluate stage wrote beside them (`threshold.json`), else at 0.5."""
        directory = Path(directory)
        if threshold is None:
            threshold = read_threshold(directory / checkpoint.THRESHOLD_FILE)
        predictor = cls.from_files(  # a model that cannot load is the error to report, first
            directory / checkpoint.MODEL_FILE,
            directory / checkpoint.TOKENIZER_FILE,
            THRESHOLD if threshold is None else threshold,
            precision,
        )
        if threshold is None:
            print(
                f"note: no {directory / checkpoint.THRESHOLD_FILE} (the evaluate stage writes "
                f"it): labelling at {THRESHOLD}",
                file=sys.stderr,
            )
        return predictor

    def predict_proba(self, reviews: Sequence[str]) -> np.ndarray:
        """Probability that each review is positive."""
        validate(reviews)
        if len(reviews) == 0:  # `not reviews` is ambiguous for an array
            return np.empty(0, dtype=np.float32)
        token_ids = text.encode_kept(self.tokenizer, reviews, self.pad.maxlen, self.pad.truncating)
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter(
            (i for ids in token_ids for i in ids), dtype=np.int64, count=int(offsets[-1])
        )
        padded, _ = pad_sequences(values, offsets, self.pad)
        model = self.float32_model if len(reviews) < self.float32_below else self.model
        logits = predict_logits(
            model, torch.from_numpy(padded.astype(np.int64)), BATCH_SIZE, self.device
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
                f"review {position} is {type(review).__name__}, not text: send it as a string"
            )
        if not review.strip():
            raise UserError(f"review {position} is empty: send some text to classify")


def read_threshold(path: str | os.PathLike[str]) -> float | None:
    """The threshold in a `threshold.json` the evaluate stage wrote; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        threshold = float(json.loads(path.read_text(encoding="utf-8"))["threshold"])
    except (ValueError, KeyError, TypeError):
        threshold = float("nan")
    if not 0 < threshold < 1:
        raise UserError(f"{path} holds no threshold in (0, 1): run `dvc repro` to write it again")
    return threshold


def write_threshold(path: str | os.PathLike[str], threshold: float) -> None:
    """Record the threshold a model was evaluated with, for every path that labels reviews."""
    write_json({"threshold": threshold}, path)
