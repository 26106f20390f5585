"""End to end: `dvc repro` in a temporary git + DVC repository, on the tiny archive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    assert repro(repo) == ["validate", "download", "tokenize", "pad", "train", "evaluate"]
    assert len(pd.read_parquet(repo / "data/raw/reviews.parquet")) == 48
    assert np.load(repo / "data/padded/train.npz")["ids"].shape == (24, 24)
    assert 0 <= json.loads((repo / "metrics/eval.json").read_text())["accuracy"] <= 1

    assert repro(repo) == []

    set_params(repo, **{"train.lr": 0.02})
    assert repro(repo) == ["validate", "train", "evaluate"]

    set_params(repo, **{"evaluate.threshold": 0.6})
    assert repro(repo) == ["validate", "evaluate"]

    set_params(repo, **{"pad.maxlen": 8})
    assert repro(repo) == ["validate", "pad", "train", "evaluate"]
    assert np.load(repo / "data/padded/test.npz")["ids"].shape == (24, 8)

    set_params(repo, **{"tokenize.max_features": 5})
    assert repro(repo) == ["validate", "tokenize", "pad", "train", "evaluate"]
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


def test_a_sweep_of_experiments_crowns_the_best_validation_model(pipeline_repo: Path) -> None:
    """Three `dvc exp run`s: each its own MLflow run, named and tagged after its experiment and
    showing its data; one registry version each; `champion` on the best validation accuracy."""
    import mlflow

    repo = pipeline_repo
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "sample pipeline"], repo)
    sweep = {"lr-high": "0.02", "lr-low": "0.001", "lr-mid": "0.005"}
    for name, lr in sweep.items():
        dvc(repo, "exp", "run", "-n", name, "-S", f"train.lr={lr}")

    runs = mlflow.search_runs(experiment_names=["rnn-sentiment"], output_format="list")
    by_name = {r.data.tags.get("dvc_exp_name"): r for r in runs}
    assert set(by_name) == set(sweep)
    for name, lr in sweep.items():
        assert by_name[name].info.run_name == name
        assert by_name[name].data.params["train.lr"] == lr
        assert {d.dataset.name for d in by_name[name].inputs.dataset_inputs} >= {"imdb-train"}
    assert "lr-high" in dvc(repo, "exp", "show", "--no-pager", "--csv")

    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name = 'rnn-sentiment'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
    champion = client.get_model_version_by_alias("rnn-sentiment", "champion")
    best = max(r.data.metrics["best_val_accuracy"] for r in runs)
    crowned = next(r for r in runs if r.info.run_id == champion.run_id)
    assert crowned.data.metrics["best_val_accuracy"] == best


def _stage_processes(repo: Path, stage: str) -> list[int]:
    """Pids of `python -m rnn_sentiment.stages.STAGE` processes working in `repo`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if f"rnn_sentiment.stages.{stage}".encode() in cmdline and cwd == repo.resolve():
            found.append(int(proc.name))
    return found


def test_sigterm_to_dvc_leaves_no_training_behind(pipeline_repo: Path) -> None:
    """What a CI runner's timeout does: SIGTERM to `dvc` alone. The training must not run on as an
    orphan that later overwrites the outputs of another `dvc repro`."""
    repo = pipeline_repo
    set_params(repo, **{"train.epochs": 100_000, "train.patience": 100_000})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc_process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _stage_processes(repo, "train") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stage_processes(repo, "train"), "the train stage never started"
        time.sleep(1)  # into the epochs
        dvc_process.send_signal(signal.SIGTERM)
        dvc_process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _stage_processes(repo, "train") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stage_processes(repo, "train") == [], "the training outlived dvc"
        assert not (repo / "models").exists()
    finally:
        dvc_process.kill()
        for pid in _stage_processes(repo, "train"):
            os.kill(pid, signal.SIGKILL)


def test_an_unknown_key_stops_the_pipeline(pipeline_repo: Path) -> None:
    """A typo in params.yaml is declared by no stage that reads it: the validate stage, which
    depends on the whole file, must stop `dvc repro` with a line naming the key."""
    repo = pipeline_repo
    assert "validate" in repro(repo)
    set_params(repo, **{"train.learning_rate": 0.01})
    with pytest.raises(AssertionError, match=r"unknown key 'train\.learning_rate'"):
        repro(repo)
