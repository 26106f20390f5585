"""Two members' clones that share a git remote, the DVC remote and the tracking server: the
experiments one runs, the other pulls, lists with their metrics, and restores with their outputs
and their MLflow runs."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from tests.sample_repo import dvc, make_sample_repo, run
from tests.team.conftest import Team
from tests.team.test_dvc_remote import add_remote, commit
from tests.team.test_queue import STORE_FILES, runs_of

pytestmark = [pytest.mark.e2e, pytest.mark.team]

EXPERIMENTS = {"lr-high": "0.03", "lr-low": "0.003"}


def experiments(repo: Path) -> dict[str, dict]:
    """`dvc exp show`: each experiment's metrics files by name."""
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    return {
        exp["name"]: exp["revs"][0]["data"]["metrics"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
    }


def test_experiments_travel_between_clones(team: Team, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    alice = make_sample_repo(
        tmp_path / "alice", **{"evaluate.registered_model_name": team.model_name}
    )
    (alice / ".gitignore").write_text(STORE_FILES, encoding="utf-8")
    add_remote(alice, team.dvc_remote, team.s3.endpoint)
    commit(alice, "sample pipeline")
    run(["git", "branch", "-M", "main"], alice)
    run(["git", "remote", "add", "origin", str(origin)], alice)
    run(["git", "push", "-q", "origin", "main"], alice)
    for name, lr in EXPERIMENTS.items():
        dvc(alice, "exp", "run", "-n", name, "-S", f"train.lr={lr}")
    dvc(alice, "exp", "push", "origin", *EXPERIMENTS)

    bob = tmp_path / "bob"
    run(["git", "clone", "-q", str(origin), str(bob)], tmp_path)
    dvc(bob, "exp", "pull", "origin", *EXPERIMENTS)
    assert experiments(bob) == experiments(alice)
    assert set(experiments(bob)) == set(EXPERIMENTS)

    client = mlflow.MlflowClient(team.tracking_uri)
    for name in EXPERIMENTS:
        dvc(bob, "exp", "apply", name)
        dvc(bob, "checkout")
        assert "up to date" in dvc(bob, "status")
        run_id = json.loads((bob / "models/mlflow_run.json").read_text())["run_id"]
        runs = runs_of(client, alice, f"tags.dvc_exp_name = '{name}'")
        assert [r.info.run_id for r in runs] == [run_id]
        assert runs[0].data.params["train.lr"] == EXPERIMENTS[name]
