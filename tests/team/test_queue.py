"""Experiments in parallel: DVC's queue with two workers, against the default SQLite store and
against the tracking server. Every experiment must succeed and be one MLflow run, and the
registry must end with one version per experiment and a champion that none of them beats."""

from __future__ import annotations

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
    experiment = client.get_experiment_by_name("rnn-sentiment")
    query = f"params.`evaluate.registered_model_name` = '{model_name}'"
    runs = client.search_runs([experiment.experiment_id], query)
    assert sorted(r.data.tags["dvc_exp_name"] for r in runs) == sorted(found)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["train.lr"] for r in runs) == sorted(LEARNING_RATES)
    assert_registry_consistent(client, model_name, {r.info.run_id for r in runs}, repo)


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
