"""Experiments in parallel: DVC's queue with two workers, against the default SQLite store and
against the tracking server. Every experiment must succeed and be one MLflow run, and the
registry must end with one version per experiment and a champion that none of them beats."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.sample_repo import dvc, make_sample_repo, run
from tests.team import queue
from tests.team.conftest import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.team]

LEARNING_RATES = ("0.003", "0.01", "0.03")
# What the project's .gitignore keeps out of git: the default store, its lock and artifacts.
STORE_FILES = "/mlflow.db\n/mlflow.db.lock\n/mlartifacts/\n"


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The tracking server's URL, or None for the project's default store (`mlflow.db`)."""
    if request.param == "server":
        return request.getfixturevalue("team").tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    return None


def test_queued_experiments_run_two_at_a_time(store: str | None, tmp_path: Path) -> None:
    model_name = unique_name("rnn-sentiment")
    repo = make_sample_repo(tmp_path, **{"evaluate.registered_model_name": model_name})
    (repo / ".gitignore").write_text(STORE_FILES, encoding="utf-8")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "sample pipeline"], repo)
    dvc(repo, "exp", "run", "--queue", "-S", f"train.lr={','.join(LEARNING_RATES)}")

    found = queue.run_queue(repo, jobs=2)
    assert len(found) == len(LEARNING_RATES)
    assert set(found.values()) == {"Success"}, queue.failure_logs(repo, found)

    client = mlflow.MlflowClient(store or f"sqlite:///{repo / 'mlflow.db'}")
    runs = runs_of(client, repo)
    assert sorted(r.data.tags["dvc_exp_name"] for r in runs) == sorted(found)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["train.lr"] for r in runs) == sorted(LEARNING_RATES)
    assert_registry_consistent(client, model_name, {r.info.run_id for r in runs}, repo)


def runs_of(client: mlflow.MlflowClient, repo: Path, query: str = "") -> list:
    """The MLflow runs of trainings started from `repo`'s current commit (a queued or workspace
    experiment runs on top of it), which no other test's repository shares."""
    experiment = client.get_experiment_by_name("rnn-sentiment").experiment_id
    commit = run(["git", "rev-parse", "HEAD"], repo).strip()
    where = f"tags.`mlflow.source.git.commit` = '{commit}'"
    return client.search_runs([experiment], f"{where} and {query}" if query else where)


def assert_registry_consistent(
    client: mlflow.MlflowClient, name: str, run_ids: set[str], repo: Path
) -> None:
    """One version per run, and a champion that no version beats on the metric the evaluate
    stage promotes on (`evaluate.promote_on` where the params name one, else test accuracy)."""
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.run_id for v in versions) == sorted(run_ids)
    policy = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
    metric = policy.get("promote_on", "test_accuracy")
    margin = policy.get("min_improvement", 0.0)
    lower_is_better = metric.endswith("loss")
    champion = client.get_model_version_by_alias(name, "champion")
    best = float(champion.tags[metric])
    for version in versions:
        gain = float(version.tags[metric]) - best
        assert (-gain if lower_is_better else gain) <= margin, (metric, version.version)


def test_a_queued_training_shows_its_epochs_as_they_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a queue worker trains, `dvc exp show` (through DVCLive's files) and the MLflow store
    (what its UI shows) both hold the epochs done so far."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    repo = make_sample_repo(tmp_path, **{"train.epochs": 5000, "train.patience": 5000})
    (repo / ".gitignore").write_text(STORE_FILES, encoding="utf-8")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "a long training"], repo)
    dvc(repo, "exp", "run", "--queue", "-n", "long")
    queue.start(repo, jobs=1)
    try:
        shown = wait_for_live_epochs(repo, "long", at_least=3)
        client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        (training,) = runs_of(client, repo, "tags.dvc_exp_name = 'long'")
        logged = client.get_metric_history(training.info.run_id, "val_loss")
        assert client.get_run(training.info.run_id).info.status == "RUNNING"
    finally:
        dvc(repo, "queue", "kill", "long")
        queue.wait(repo)
    assert shown["step"] >= 3 and len(logged) >= shown["step"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(shown)


def wait_for_live_epochs(repo: Path, name: str, at_least: int, timeout: float = 300) -> dict:
    """Poll `dvc exp show` until the running experiment `name` shows `at_least` epochs; return
    the DVCLive metrics it shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(dvc(repo, "exp", "show", "--json"))
        for exp in (exp for baseline in shown for exp in baseline.get("experiments") or []):
            data = (exp["revs"][0].get("data") or {}) if exp.get("name") == name else {}
            live = ((data.get("metrics") or {}).get("dvclive/metrics.json") or {}).get("data")
            if live and live.get("step", 0) >= at_least:
                return live
        time.sleep(1)
    raise AssertionError(
        f"{name} showed no {at_least} epochs in {timeout} s: {queue.statuses(repo)}"
    )
