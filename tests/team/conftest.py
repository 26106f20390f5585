"""Fixtures that start a team's shared stores once per test session and stop them after.

Where PostgreSQL or the Python packages are missing, the tests skip and say what to install;
in CI (`CI` set), where `.ci/run` installs them, they fail instead of skipping unnoticed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.team import servers
from tests.team.servers import S3

BUCKET = "team"


@pytest.fixture(scope="session")
def team_tools() -> None:
    if lacking := servers.missing():
        reason = f"the team stores need {', '.join(lacking)}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def s3(team_tools: None) -> Iterator[S3]:
    with servers.s3_server() as store:
        store.create_bucket(BUCKET)
        yield store


@pytest.fixture(scope="session")
def postgres(team_tools: None) -> Iterator[str]:
    with servers.postgres() as url:
        yield url


@pytest.fixture(scope="session")
def tracking_db(postgres: str) -> str:
    return servers.create_database(postgres, "mlflow")


@pytest.fixture(scope="session")
def tracking_server(tracking_db: str, s3: S3) -> Iterator[str]:
    with servers.tracking_server(tracking_db, s3, f"s3://{BUCKET}/mlflow") as (url, _):
        yield url


@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3:
    """Give this test's processes the object store's credentials, and no real AWS ones."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return s3


def unique_name(prefix: str) -> str:
    """A name no other test uses on the shared servers, which outlive each test."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Team:
    """What one test sees of the shared stores: the tracking server's URL, the object store, and
    a registered-model name and a DVC remote of its own."""

    tracking_uri: str
    s3: S3
    model_name: str
    dvc_remote: str


@pytest.fixture
def team(tracking_server: str, s3_env: S3, monkeypatch: pytest.MonkeyPatch) -> Team:
    """Point this test's processes at the tracking server and the object store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracking_server)
    return Team(
        tracking_server,
        s3_env,
        unique_name("rnn-sentiment"),
        f"s3://{BUCKET}/{unique_name('dvc')}",
    )
