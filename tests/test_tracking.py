from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from matplotlib.figure import Figure

from rnn_sentiment import params as params_lib
from rnn_sentiment import pyfunc, tracking
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import DownloadParams, ModelParams, TrainParams
from rnn_sentiment.stages import train
from tests.conftest import synthetic_padded
from tests.mlflow_server import free_port
from tests.thresholds import flipping_threshold, labels

# What models logged before `pyfunc.py` existed run when they load.
OLD_ENTRY_SCRIPT = """\
from mlflow.models import set_model

from rnn_sentiment.tracking import SentimentPyfunc

set_model(SentimentPyfunc())
"""


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


@pytest.mark.parametrize(("preset", "expected"), [(None, "false"), ("true", "true")])
def test_mlflows_artifact_bars_are_quiet_under_ci_unless_asked_for(
    monkeypatch, preset: str | None, expected: str
) -> None:
    monkeypatch.setenv("CI", "1")
    # Set first, even when the case wants it unset: monkeypatch restores only what it has seen,
    # and `configure` sets it.
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", preset or "")
    if preset is None:
        monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    tracking.configure()
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == expected


def test_an_unreachable_tracking_server_is_one_line_within_seconds(monkeypatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        tracking.configure()
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert message.startswith(f"no MLflow tracking server answers at {uri} (")
    assert "MLFLOW_TRACKING_URI" in message and "\n" not in message


def test_tags_name_the_dvc_stage_experiment_and_process(monkeypatch) -> None:
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv("DVC_EXP_NAME", "lr-high")
    tags = tracking.run_tags()
    assert tags["dvc_stage"] == "train"
    assert tags["dvc_exp_name"] == "lr-high"
    assert (tags["host"], tags["pid"]) == (socket.gethostname(), str(os.getpid()))


def test_a_run_is_named_after_its_experiment_else_its_configuration(monkeypatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    params = {"train.lr": 0.001, "train.epochs": 4}
    with tracking.training_run(params, "gru-h256-e4") as run_id:
        pass
    name = mlflow.get_run(run_id).info.run_name
    commit = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert name.startswith(f"gru-h256-e4-{commit}-" if commit else "gru-h256-e4-")
    assert name == tracking.run_name("gru-h256-e4", params)
    assert tracking.run_name("gru-h256-e4", params | {"train.lr": 0.01}) != name

    monkeypatch.setenv("DVC_EXP_NAME", "lr-high")
    with tracking.training_run(params, "gru-h256-e4") as run_id:
        pass
    assert mlflow.get_run(run_id).info.run_name == "lr-high"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


KILLED_TRAINING = """\
import os, signal
from rnn_sentiment import tracking
with tracking.training_run({}, "doomed") as run_id:
    print(run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_training_closes_runs_whose_process_died_and_only_those() -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING], capture_output=True, text=True, check=False
    )
    assert killed.returncode == -9, killed.stderr
    client = mlflow.MlflowClient()
    tracking.configure()
    assert client.get_run(killed.stdout.strip()).info.status == "RUNNING"
    experiment_id = mlflow.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs = {
            what: client.create_run(experiment_id, tags={"host": on, "pid": str(pid)}).info.run_id
            for what, on, pid in [
                ("live", host, live.pid),  # a queue worker training beside us
                ("elsewhere", "another-host", dead_pid()),
            ]
        }
        runs["killed"] = killed.stdout.strip()
        with tracking.training_run({}, "next") as new_run:
            assert client.get_run(new_run).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait()
    killed = client.get_run(runs["killed"])
    assert killed.info.status == "KILLED" and killed.info.end_time is not None
    assert "ended without closing this run" in killed.data.tags["killed_reason"]
    for what in ("live", "elsewhere"):
        run = client.get_run(runs[what])
        assert run.info.status == "RUNNING" and "killed_reason" not in run.data.tags
    assert client.get_run(new_run).info.status == "FINISHED"


def test_datasets_name_the_archive_and_the_arrays_dvc_hashed(tmp_path: Path) -> None:
    arrays, test_arrays = tmp_path / "train.npz", tmp_path / "test.npz"
    arrays.write_bytes(b"padded arrays")
    test_arrays.write_bytes(b"padded test arrays")
    source = DownloadParams(url="https://example.org/imdb.tar.gz", sha256="a" * 64)
    with tracking.training_run({}, "run") as run_id:
        tracking.log_dataset(run_id, arrays, "training", source, rows=24)
    local = DownloadParams(url="/data/imdb.tar.gz")
    tracking.log_dataset(run_id, test_arrays, "evaluation", local)

    inputs = mlflow.get_run(run_id).inputs.dataset_inputs
    by_context = {i.tags[0].value: i.dataset for i in inputs}
    assert set(by_context) == {"training", "evaluation"}
    training = by_context["training"]
    md5 = hashlib.md5(b"padded arrays").hexdigest()
    assert (training.name, training.digest, training.source_type) == ("imdb-train", md5, "http")
    assert json.loads(training.source) == {"url": "https://example.org/imdb.tar.gz"}
    profile = json.loads(training.profile)
    assert (profile["archive_sha256"], profile["dvc_md5"], profile["rows"]) == ("a" * 64, md5, 24)
    evaluation = by_context["evaluation"]
    assert (evaluation.name, evaluation.source_type) == ("imdb-test", "local")
    assert json.loads(evaluation.source) == {"uri": "/data/imdb.tar.gz"}


class BrokenFigure(Figure):
    """A figure that fails to save, as an evaluation killed while logging would stop."""

    def savefig(self, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt


def test_an_evaluation_leaves_the_finished_training_run_finished() -> None:
    with tracking.training_run({}, "run") as run_id:
        pass
    finished = mlflow.get_run(run_id).info
    tracking.log_evaluation(run_id, {"accuracy": 0.8}, {}, {"evaluate.threshold": 0.6})
    with pytest.raises(KeyboardInterrupt):
        tracking.log_evaluation(run_id, {"accuracy": 0.7}, {"roc": BrokenFigure()}, {})

    run = mlflow.get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("FINISHED", finished.end_time)
    assert run.data.metrics["test_accuracy"] == 0.7
    assert run.data.tags["evaluate.threshold"] == "0.6"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A tiny trained model's folder."""
    arrays, tokenizer = synthetic_padded(per_class=20)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    params = params_lib.Params(
        train=TrainParams(model=ModelParams(embedding_dim=4, hidden_dim=4), epochs=1, batch_size=8)
    )
    result = train.run(params.train, 0, arrays, tokenizer, torch.device("cpu"))
    train.write_model_dir(tmp_path / "models", result.model, params, tmp_path / "tokenizer.json")
    return tmp_path / "models"


def test_a_model_logged_with_the_old_entry_script_still_loads(model_dir: Path, monkeypatch) -> None:
    reviews = ["great film", "awful film"]
    monkeypatch.setattr(pyfunc, "ENTRY_SCRIPT", OLD_ENTRY_SCRIPT)
    with tracking.training_run({}, "old") as run_id:
        model_uri = tracking.log_model(model_dir, reviews)
    logged = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(model_dir.parent / "dl"))
    scripts = [path.read_text() for path in Path(logged).rglob("sentiment_model.py")]
    assert scripts == [OLD_ENTRY_SCRIPT]

    predictions = tracking.load_pyfunc(f"runs:/{run_id}/{tracking.MODEL_NAME}").predict(reviews)
    assert predictions["probability"].between(0, 1).all()
    assert set(predictions["label"]) <= {"positive", "negative"}


def test_a_recorded_threshold_labels_through_the_logged_model(model_dir: Path) -> None:
    reviews = ["great film", "awful film", "the plot", "loved it"]
    with tracking.training_run({}, "t"):
        model_uri = tracking.log_model(model_dir, reviews[:2])
    probabilities = tracking.load_pyfunc(model_uri).predict(reviews)["probability"].to_numpy()
    threshold = flipping_threshold(probabilities)
    (model_dir / "threshold.json").write_text(json.dumps({"threshold": threshold}))

    assert tracking.record_threshold(model_uri, model_dir / "threshold.json")
    predicted = tracking.load_pyfunc(model_uri).predict(reviews)["label"].tolist()
    assert predicted == labels(probabilities, threshold) != labels(probabilities, 0.5)
