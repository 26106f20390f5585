from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from rnn_sentiment import params as params_lib
from rnn_sentiment import tracking
from rnn_sentiment.params import ModelParams, TrainParams
from rnn_sentiment.stages import train
from tests.conftest import synthetic_padded


def test_project_root_of_a_queued_experiment_is_the_original_repo(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo/.dvc/tmp/exps/tmpab12/"))
    assert tracking.project_root() == (tmp_path / "repo").resolve()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.project_root() == (tmp_path / "repo").resolve()


def test_default_store_is_sqlite_at_the_project_root(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.configure() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_tags_name_the_dvc_stage_and_experiment(monkeypatch) -> None:
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv("DVC_EXP_NAME", "lr-high")
    tags = tracking.run_tags()
    assert tags["dvc_stage"] == "train"
    assert tags["dvc_exp_name"] == "lr-high"


@pytest.fixture
def logged_model(tmp_path: Path) -> tuple[str, str]:
    """A tiny trained model logged in its own run; returns (run id, model URI)."""
    arrays, tokenizer = synthetic_padded(per_class=20)
    tokenizer_path = tmp_path / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    params = params_lib.Params(
        train=TrainParams(model=ModelParams(embedding_dim=4, hidden_dim=4), epochs=1, batch_size=8)
    )
    with tracking.training_run(tracking_params := params_lib.flatten(params)) as run_id:
        result = train.run(params.train, 0, arrays, tokenizer.get_vocab_size(), torch.device("cpu"))
        train.write_model_dir(tmp_path / "models", result.model, params, tokenizer_path)
        model_uri = tracking.log_model(tmp_path / "models", ["great film", "awful film"])
    assert tracking_params["train.epochs"] == 1
    return run_id, model_uri


def test_champion_moves_only_to_a_better_model(logged_model) -> None:
    run_id, model_uri = logged_model
    base = {"precision": 0.5}
    first = tracking.record_evaluation(run_id, model_uri, base | {"accuracy": 0.8}, {}, "m")
    worse = tracking.record_evaluation(run_id, model_uri, base | {"accuracy": 0.7}, {}, "m")
    better = tracking.record_evaluation(run_id, model_uri, base | {"accuracy": 0.9}, {}, "m")

    assert (first["champion"], worse["champion"], better["champion"]) == (True, False, True)
    champion = mlflow.MlflowClient().get_model_version_by_alias("m", tracking.CHAMPION)
    assert int(champion.version) == better["version"] == 3
    run = mlflow.get_run(run_id)
    assert run.data.metrics["test_accuracy"] == 0.9
    assert run.data.params["train.model.hidden_dim"] == "4"
