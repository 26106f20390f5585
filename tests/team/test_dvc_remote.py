"""A DVC remote on an S3-compatible store: what one member pushes, another pulls into a fresh
clone, whose pipeline is then up to date without running a stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sample_repo import dvc, make_sample_repo, repro, run
from tests.team.conftest import BUCKET, unique_name
from tests.team.servers import S3

pytestmark = [pytest.mark.e2e, pytest.mark.team]


def add_remote(repo: Path, url: str, endpoint: str) -> None:
    """Make `url` the default remote, as docs/team.md has a team do (credentials stay out)."""
    dvc(repo, "remote", "add", "-d", "storage", url)
    dvc(repo, "remote", "modify", "storage", "endpointurl", endpoint)


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


def test_a_fresh_clone_pulls_an_up_to_date_pipeline(s3_env: S3, tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path)
    add_remote(repo, f"s3://{BUCKET}/{unique_name('dvc')}", s3_env.endpoint)
    assert repro(repo) == ["validate", "download", "tokenize", "pad", "train", "evaluate"]
    commit(repo, "pipeline run")
    dvc(repo, "push")
    config = (repo / ".dvc/config").read_text()
    assert "endpointurl" in config and "testing" not in config  # no credentials in git

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models/model.pt").exists()  # models/.gitignore is in git; the model is not
    dvc(clone, "pull")
    assert (clone / "models/model.pt").read_bytes() == (repo / "models/model.pt").read_bytes()
    assert "up to date" in dvc(clone, "status")
    assert repro(clone) == []
