"""A throwaway git + DVC repository running this project's pipeline on a tiny archive.

Shared by the end-to-end tests and by CI's sample pipeline run (`.ci/sample_pipeline.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rnn_sentiment.params import set_dotted
from tests.conftest import build_archive, sha256

REPO = Path(__file__).resolve().parents[1]
# Commits in the scratch repo need an identity, which a fresh CI machine may not have configured.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "rnn-sentiment tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "rnn-sentiment tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}
TINY_TRAINING = {
    "train.model.embedding_dim": 8,
    "train.model.hidden_dim": 8,
    "train.model.nb_features": 1000,
    "train.model.nb_negation": True,
    "train.epochs": 2,
    "train.batch_size": 8,
    "train.lr": 0.01,
    "pad.maxlen": 24,
}


def run(cmd: list[str], cwd: Path) -> str:
    """Run a command with this interpreter's bin folder first on PATH; fail with its output."""
    env = {
        **GIT_IDENTITY,
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def dvc(repo: Path, *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], repo)


def repro(repo: Path) -> list[str]:
    """Run `dvc repro` and return the stages it ran, in order."""
    return re.findall(r"Running stage '(\w+)'", dvc(repo, "repro"))


def set_params(repo: Path, **changes: object) -> None:
    """Change dotted keys of the repo's params.yaml, e.g. set_params(repo, **{"pad.maxlen": 8})."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        set_dotted(params, dotted, value)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def make_sample_repo(root: Path, archive: Path | None = None, **changes: object) -> Path:
    """A git + DVC repo at `root/repo` with this project's pipeline and params.

    It reads `archive` (by default a tiny one built here, trained with `TINY_TRAINING`), with
    `changes` applied to its params.
    """
    repo = root / "repo"
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    if archive is None:
        archive = build_archive(root / "aclImdb_tiny.tar.gz")
        changes = TINY_TRAINING | changes
    source = {"download.url": str(archive.resolve()), "download.sha256": sha256(archive)}
    set_params(repo, **source, **{"download.mirrors": []}, **changes)
    run(["git", "init", "-q"], repo)
    dvc(repo, "init", "-q")
    return repo
