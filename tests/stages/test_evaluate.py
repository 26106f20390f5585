from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from rnn_sentiment import checkpoint, tracking
from rnn_sentiment.serving import Predictor
from rnn_sentiment.stages import evaluate, train
from tests.mlflow_server import free_port
from tests.stages.tiny_stages import evaluate_argv, set_params, train_argv, write_inputs
from tests.thresholds import flipping_threshold, labels

REPO = Path(__file__).resolve().parents[2]
REVIEWS = ["Great film, wonderful and moving.", "Awful and boring.", "The plot.", "Loved it!"]


def test_score_counts_labels_at_the_threshold() -> None:
    labels_ = np.array([0, 0, 1, 1])
    probabilities = np.array([0.2, 0.6, 0.55, 0.9])
    assert evaluate.score(labels_, probabilities, 0.5)["accuracy"] == 0.75
    at_high = evaluate.score(labels_, probabilities, 0.58)
    assert (at_high["false_positives"], at_high["false_negatives"]) == (1, 1)


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    root = write_inputs(tmp_path)
    assert train.main(train_argv(root)) == 0
    return root


def test_re_evaluating_at_another_threshold_relabels_every_path_and_keeps_one_version(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = trained
    assert evaluate.main(evaluate_argv(root)) == 0
    assert "rnn-sentiment v1 (best_val_accuracy" in capsys.readouterr().out
    assert json.loads((root / "models" / checkpoint.THRESHOLD_FILE).read_text()) == {
        "threshold": 0.5
    }
    probabilities = Predictor.from_dir(root / "models").predict_proba(REVIEWS)
    threshold = flipping_threshold(probabilities)
    set_params(root, **{"evaluate.threshold": threshold})
    assert evaluate.main(evaluate_argv(root)) == 0

    expected = labels(probabilities, threshold)
    assert expected != labels(probabilities, 0.5)
    assert [p.label for p in Predictor.from_dir(root / "models").predict(REVIEWS)] == expected
    champion = "models:/rnn-sentiment@champion"
    assert list(tracking.load_pyfunc(champion).predict(REVIEWS)["label"]) == expected

    client = mlflow.MlflowClient()
    (version,) = client.search_model_versions("name='rnn-sentiment'")
    assert version.tags["threshold"] == str(threshold)
    assert version.tags["best_val_accuracy"] and version.tags["test_accuracy"]
    run = client.get_run(json.loads((root / "models" / checkpoint.RUN_FILE).read_text())["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["evaluate.threshold"] == str(threshold)
    assert run.data.tags["evaluate.promote_on"] == "best_val_accuracy"
    contexts = {i.tags[0].value: i.dataset.digest for i in run.inputs.dataset_inputs}
    test_md5 = hashlib.md5((root / "padded/test.npz").read_bytes()).hexdigest()
    assert contexts["evaluation"] == test_md5


def test_an_unreachable_tracking_server_fails_at_once_in_one_line(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    capsys.readouterr()
    start = time.monotonic()
    assert evaluate.main(evaluate_argv(trained)) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith(f"error: no MLflow tracking server answers at {uri} (")
    assert err.count("\n") == 1
    assert not (trained / "models" / checkpoint.THRESHOLD_FILE).exists()


@pytest.mark.parametrize("store", ["missing.db", "other.db"])
def test_a_store_without_the_training_run_fails_in_one_line_before_any_work(
    trained: Path,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model folder trained against one store, evaluated against another (absent, or holding
    other runs), is named in one line, and neither store nor model folder is touched."""
    path = trained / store
    if store == "other.db":
        mlflow.MlflowClient(f"sqlite:///{path}").create_experiment("someone else's")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = path.read_bytes() if path.exists() else None
    capsys.readouterr()
    assert evaluate.main(evaluate_argv(trained)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"sqlite:///{path}" in err
    assert "MLFLOW_TRACKING_URI" in err
    assert (path.read_bytes() if path.exists() else None) == before
    assert not (trained / "models" / checkpoint.THRESHOLD_FILE).exists()


def test_dvc_yaml_outs_are_the_model_folders_files() -> None:
    """train writes the model folder file by file and evaluate adds the threshold beside them:
    dvc.yaml must name exactly the files the code writes."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    folder = "${paths.models}"
    model_files = (checkpoint.MODEL_FILE, checkpoint.TOKENIZER_FILE, checkpoint.RUN_FILE)
    train_outs = [out for out in stages["train"]["outs"] if out.startswith(folder)]
    assert train_outs == [f"{folder}/{name}" for name in model_files]
    assert f"{folder}/{checkpoint.THRESHOLD_FILE}" in stages["evaluate"]["outs"]
    reads = {f"{folder}/{checkpoint.MODEL_FILE}", f"{folder}/{checkpoint.RUN_FILE}"}
    assert reads <= set(stages["evaluate"]["deps"])
    evaluate_params = {key.removeprefix("evaluate.") for key in stages["evaluate"]["params"]}
    assert evaluate_params == set(evaluate.EvaluateParams.model_fields)
