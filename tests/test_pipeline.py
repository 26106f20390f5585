"""End to end: `dvc repro` in a temporary git + DVC repository, on the tiny archive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.sample_repo import dvc, make_sample_repo, repro, run, set_params

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline_repo(tmp_path: Path) -> Path:
    return make_sample_repo(tmp_path)


def test_repro_reruns_only_what_a_change_touches(pipeline_repo: Path) -> None:
    repo = pipeline_repo
    assert repro(repo) == ["download", "tokenize", "pad", "train", "evaluate"]
    assert len(pd.read_parquet(repo / "data/raw/reviews.parquet")) == 48
    assert np.load(repo / "data/padded/train.npz")["ids"].shape == (24, 24)
    assert 0 <= json.loads((repo / "metrics/eval.json").read_text())["accuracy"] <= 1

    assert repro(repo) == []

    set_params(repo, **{"train.lr": 0.02})
    assert repro(repo) == ["train", "evaluate"]

    set_params(repo, **{"evaluate.threshold": 0.6})
    assert repro(repo) == ["evaluate"]

    set_params(repo, **{"pad.maxlen": 8})
    assert repro(repo) == ["pad", "train", "evaluate"]
    assert np.load(repo / "data/padded/test.npz")["ids"].shape == (24, 8)

    set_params(repo, **{"tokenize.max_features": 5})
    assert repro(repo) == ["tokenize", "pad", "train", "evaluate"]
    assert np.load(repo / "data/padded/train.npz")["ids"].max() <= 6

    check_mlflow_store(expected_trainings=4)


def check_mlflow_store(expected_trainings: int) -> None:
    """One run per training, with params, per-epoch metrics and a model that reads raw text."""
    import mlflow

    runs = mlflow.search_runs(experiment_names=["rnn-sentiment"], output_format="list")
    assert len(runs) == expected_trainings
    latest = max(runs, key=lambda run: run.info.start_time)
    assert latest.data.params["tokenize.max_features"] == "5"
    assert latest.data.params["train.lr"] == "0.02"
    assert latest.data.tags["dvc_stage"] == "train"
    assert "test_accuracy" in latest.data.metrics
    history = mlflow.MlflowClient().get_metric_history(latest.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    model = mlflow.pyfunc.load_model("models:/rnn-sentiment@champion")
    predictions = model.predict(["A wonderful, moving film.", "Awful and boring."])
    assert list(predictions.columns) == ["probability", "label"]
    assert predictions["probability"].between(0, 1).all()


def test_each_experiment_is_its_own_tagged_mlflow_run(pipeline_repo: Path) -> None:
    import mlflow

    repo = pipeline_repo
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "sample pipeline"], repo)
    dvc(repo, "exp", "run", "-n", "lr-high", "-S", "train.lr=0.02")
    dvc(repo, "exp", "run", "-n", "lr-low", "-S", "train.lr=0.001")

    runs = mlflow.search_runs(experiment_names=["rnn-sentiment"], output_format="list")
    by_name = {r.data.tags.get("dvc_exp_name"): r for r in runs}
    assert set(by_name) == {"lr-high", "lr-low"}
    assert by_name["lr-high"].data.params["train.lr"] == "0.02"
    assert by_name["lr-low"].data.params["train.lr"] == "0.001"
    assert "lr-high" in dvc(repo, "exp", "show", "--no-pager", "--csv")
