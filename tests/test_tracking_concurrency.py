"""Trainings that start at once, as `dvc queue start -j N` starts them, on one new SQLite store."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mlflow

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
