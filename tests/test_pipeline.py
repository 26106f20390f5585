"""End to end: `dvc repro` in a temporary git + DVC repository, on the tiny archive."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import build_archive, sha256

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def repro(repo: Path) -> list[str]:
    """Run `dvc repro` and return the stages it ran, in order."""
    return re.findall(r"Running stage '(\w+)'", run([sys.executable, "-m", "dvc", "repro"], repo))


def set_params(repo: Path, **changes: object) -> None:
    """Change dotted keys of the repo's params.yaml, e.g. set_params(repo, **{"pad.maxlen": 8})."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        block = params
        for parent in parents:
            block = block[parent]
        block[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


@pytest.fixture
def pipeline_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    archive = build_archive(tmp_path / "aclImdb_tiny.tar.gz")
    set_params(
        repo,
        **{
            "download.url": str(archive),
            "download.sha256": sha256(archive),
            "download.mirrors": [],
        },
    )
    run(["git", "init", "-q"], repo)
    run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    return repo


TINY_TRAINING = {
    "train.model.embedding_dim": 8,
    "train.model.hidden_dim": 8,
    "train.epochs": 2,
    "train.batch_size": 8,
    "train.lr": 0.01,
    "pad.maxlen": 24,
}


def test_repro_reruns_only_what_a_change_touches(pipeline_repo: Path) -> None:
    repo = pipeline_repo
    set_params(repo, **TINY_TRAINING)
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
