"""What `--model` names, loaded: the train stage's folder directly, or an MLflow model by URI."""

from __future__ import annotations

import re
from pathlib import Path

from rnn_sentiment.errors import UserError
from rnn_sentiment.serving import Precision, Predictor, Scorer, serving_dtype
from rnn_sentiment.training import choose_device

# `models:/...`, `runs:/...`, `file:///...`, `s3://...`; a single letter is a Windows drive.
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def load_scorer(model: str, precision: Precision = "auto") -> Scorer:
    """The train stage's folder loads directly; a URI, or a folder holding an `MLmodel` file,
    loads through MLflow from the project's store."""
    if URI_SCHEME.match(model) or (Path(model) / "MLmodel").is_file():
        # Imported here: scoring the folder should not pay for importing MLflow.
        from rnn_sentiment import tracking
        from rnn_sentiment.pyfunc import PyfuncPredictor

        serving_dtype(precision, choose_device())
        return PyfuncPredictor(tracking.load_pyfunc(model, {"precision": precision}))
    if not Path(model).is_dir():
        raise UserError(
            f"no model folder {model}: run `dvc repro` to train one, or pass --model with a "
            "folder or an MLflow model URI such as models:/rnn-sentiment@champion"
        )
    return Predictor.from_dir(model, precision=precision)
