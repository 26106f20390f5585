"""End to end: `dvc repro` in a scratch repository, then a new `evaluate.threshold`. Only the
evaluate stage runs again; `rnn-sentiment predict` and the registered champion label at the new
threshold, and the registry still holds one version of the one model."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest

from tests.sample_repo import make_sample_repo, repro, run, set_params
from tests.thresholds import flipping_threshold, labels

pytestmark = pytest.mark.e2e
REVIEWS = ["A wonderful, moving film.", "Awful and boring.", "The plot and the music.", "Dull."]


def predict(repo: Path) -> tuple[list[str], list[float]]:
    """Labels and probabilities `rnn-sentiment predict` prints for REVIEWS in `repo`."""
    out = run([sys.executable, "-m", "rnn_sentiment.cli", "predict", *REVIEWS], repo)
    rows = [line.split("\t") for line in out.splitlines()]
    return [row[0] for row in rows], [float(row[1]) for row in rows]


def test_a_new_threshold_relabels_every_path_and_registers_nothing_new(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path)
    assert repro(repo) == ["validate", "download", "tokenize", "pad", "train", "evaluate"]
    assert (repo / "models/threshold.json").is_file()
    _, probabilities = predict(repo)
    threshold = flipping_threshold(probabilities)

    set_params(repo, **{"evaluate.threshold": threshold})
    assert repro(repo) == ["validate", "evaluate"]
    printed, _ = predict(repo)
    assert printed == labels(probabilities, threshold) != labels(probabilities, 0.5)
    served = mlflow.pyfunc.load_model("models:/rnn-sentiment@champion").predict(REVIEWS)
    assert list(served["label"]) == printed

    (version,) = mlflow.MlflowClient().search_model_versions("name='rnn-sentiment'")
    assert version.tags["threshold"] == str(threshold)
    (training,) = mlflow.search_runs(experiment_names=["rnn-sentiment"], output_format="list")
    assert training.info.run_name.startswith("gru-h8-e2-")
    assert {i.tags[0].value for i in training.inputs.dataset_inputs} == {"training", "evaluation"}
