"""Trainings that start at once, as `dvc queue start -j N` starts them, on one new store."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

from rnn_sentiment import tracking

WORKERS = 3


def _experiment_of_a_new_training(uri: str) -> str:
    mlflow.set_tracking_uri(uri)
    return tracking._experiment_id(uri)


def test_trainings_starting_at_once_share_one_new_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Forked after MLflow is imported, the workers reach the new store within milliseconds.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        ids = list(pool.map(_experiment_of_a_new_training, [uri] * WORKERS))
    assert len(set(ids)) == 1
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_experiment(ids[0]).name == tracking.EXPERIMENT


def test_a_training_that_loses_the_race_to_create_the_experiment_uses_the_winners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a tracking server no lock is shared: another training may create the experiment
    between this one's look-up and its own create."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    create = mlflow.create_experiment

    def lose_the_race(name: str, artifact_location: str | None = None) -> str:
        create(name, artifact_location=artifact_location)  # the other training, first
        raise MlflowException(f"Experiment '{name}' already exists.", RESOURCE_ALREADY_EXISTS)

    monkeypatch.setattr(mlflow, "create_experiment", lose_the_race)
    experiment = tracking._experiment_id(uri)
    assert experiment == mlflow.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
