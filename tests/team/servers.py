"""A team's shared stores, started for a while on loopback: PostgreSQL, an S3-compatible object
store (moto's server) and an MLflow tracking server that keeps runs in the first and artifacts in
the second. The end-to-end tests and `benchmarks/team_timing.py` use them; docs/team.md gives the
same command lines for a real deployment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.mlflow_server import background, free_port

# moto takes any credentials; these keep boto3, s3fs and MLflow away from real ones.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PYTHON_MODULES = {"moto": "moto[server]", "psycopg2": "psycopg2-binary", "dvc_s3": "dvc-s3"}


def missing() -> list[str]:
    """What this machine lacks to run the servers: PostgreSQL's binaries and Python packages."""
    lacking = [] if _postgres_bindir() else ["PostgreSQL (apt-get install postgresql)"]
    return lacking + [
        pip for module, pip in PYTHON_MODULES.items() if not importlib.util.find_spec(module)
    ]


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's versioned folder (newest first)."""
    if initdb := shutil.which("initdb"):
        return Path(initdb).resolve().parent
    folders = Path("/usr/lib/postgresql").glob("*/bin")
    newest = max(folders, key=lambda folder: int(folder.parent.name), default=None)
    return newest


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 while the block runs; yield its SQLAlchemy URL
    without a database (`create_database` adds one).

    initdb refuses to run as root, so under root the cluster belongs to the `postgres` account
    that Debian's package creates. Durability is off: the cluster dies with the block.
    """
    bindir = _postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="rnn-sentiment-pg-"))
    as_owner = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    options += " -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        _check([*as_owner, *initdb, "-E", "UTF8"])
        _check([*pg_ctl, "-l", str(root / "server.log"), "-w", "-o", options, "start"])
        try:
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
        finally:
            _check([*pg_ctl, "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on a `postgres()` cluster; return its SQLAlchemy URL."""
    import psycopg2

    host_port = server_url.rsplit("@", 1)[1]
    host, port = host_port.split(":")
    connection = psycopg2.connect(host=host, port=int(port), user="postgres", dbname="postgres")
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return f"{server_url}/{name}"


@dataclass(frozen=True)
class S3:
    """An S3-compatible store: its endpoint, and the environment a client needs to reach it."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {**S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix` in `bucket`."""
        listing = self.client().get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@contextlib.contextmanager
def s3_server() -> Iterator[S3]:
    """moto's S3-compatible server on 127.0.0.1 while the block runs."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with background(command, f"{url}/moto-api/", {**os.environ, **S3_CREDENTIALS}):
        yield S3(url)


@contextlib.contextmanager
def tracking_server(
    backend_uri: str, s3: S3, artifacts: str, timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mlflow server` on 127.0.0.1 while the block runs: runs and registry in `backend_uri`,
    artifacts proxied (`--serve-artifacts`) to `artifacts` (`s3://bucket/prefix`), so clients
    need no S3 credentials. Yields its URL and its process (the block may kill it)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += ["--backend-store-uri", backend_uri, "--artifacts-destination", artifacts]
    command += ["--serve-artifacts", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    url = f"http://127.0.0.1:{port}"
    with background(command, f"{url}/health", {**os.environ, **s3.env}, timeout) as server:
        yield url, server


def _check(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
