"""The pipeline against a team's tracking server: `mlflow server` with its runs and registry in
PostgreSQL and its artifacts in an S3-compatible store, all on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from rnn_sentiment.serving import Predictor
from tests.mlflow_server import invoke, mlflow_server
from tests.sample_repo import GIT_IDENTITY, make_sample_repo, repro
from tests.team import servers
from tests.team.conftest import BUCKET, Team, unique_name
from tests.team.servers import S3

pytestmark = [pytest.mark.e2e, pytest.mark.team]

REVIEWS = ["A wonderful, moving film.", "Awful and boring, a waste."]


def test_repro_tracks_and_serves_from_the_server(team: Team, tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path, **{"evaluate.registered_model_name": team.model_name})
    assert repro(repo) == ["validate", "download", "tokenize", "pad", "train", "evaluate"]

    run_id = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(team.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    assert "test_accuracy" in run.data.metrics
    # Artifacts went through the server to the object store, none to the repository's disk.
    experiment = run.info.experiment_id
    stored = team.s3.keys(BUCKET, f"mlflow/{experiment}/")
    assert any(key.endswith(f"{run_id}/artifacts/plots/roc.png") for key in stored)
    assert any(key.endswith("/artifacts/artifacts/model.pt") for key in stored)
    assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists()

    champion = client.get_model_version_by_alias(team.model_name, "champion")
    assert champion.run_id == run_id
    expected = Predictor.from_dir(repo / "models").predict_proba(REVIEWS)
    with mlflow_server(f"models:/{team.model_name}@champion") as url:
        status, body = invoke(url, {"inputs": REVIEWS})
    assert status == 200
    served = [row["probability"] for row in body["predictions"]]
    np.testing.assert_allclose(served, expected, atol=1e-6)


def test_a_server_lost_mid_training_leaves_no_outputs(
    s3_env: S3, postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server (one of its own, on a database of its own) goes away while the train stage logs
    its epochs: the stage fails within seconds (MLflow's retries turned down, as docs/team.md
    advises) and writes neither the model nor the metrics, so DVC has nothing half-done to commit
    and `dvc repro` trains again later."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    slow = {"train.epochs": 5000, "train.patience": 5000}
    repo = make_sample_repo(tmp_path, **slow)
    database = servers.create_database(postgres, unique_name("lost").replace("-", "_"))
    artifacts = f"s3://{BUCKET}/{unique_name('lost')}"
    with servers.tracking_server(database, s3_env, artifacts) as (url, server):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
        with (tmp_path / "repro.log").open("w+") as log:
            pipeline = subprocess.Popen(
                [sys.executable, "-m", "dvc", "repro"],
                cwd=repo,
                env={**GIT_IDENTITY, **os.environ},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_for_epochs(url, pipeline)
                os.killpg(server.pid, signal.SIGKILL)
                code = pipeline.wait(timeout=180)
            finally:
                if pipeline.poll() is None:
                    pipeline.kill()
                    pipeline.wait()
            log.seek(0)
            output = log.read()
    assert code != 0, output
    assert "Running stage 'train'" in output
    assert not (repo / "models").exists(), output
    assert not (repo / "metrics/train.json").exists()
    assert not (repo / "plots/train_curve.csv").exists()
    assert "train" not in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def _wait_for_epochs(url: str, pipeline: subprocess.Popen) -> None:
    """Wait until the training has sent its first epoch to the server (its only run)."""
    client = mlflow.MlflowClient(url)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and pipeline.poll() is None:
        experiment = client.get_experiment_by_name("rnn-sentiment")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "val_loss"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no epoch reached the server (pipeline exit {pipeline.poll()})")
