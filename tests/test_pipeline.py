"""End to end: `dvc repro` in a temporary git + DVC repository, on the tiny archive."""

from __future__ import annotations

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


def test_repro_reruns_only_what_a_change_touches(pipeline_repo: Path) -> None:
    repo = pipeline_repo
    assert repro(repo) == ["download", "tokenize", "pad"]
    reviews = pd.read_parquet(repo / "data/raw/reviews.parquet")
    assert len(reviews) == 48
    train = np.load(repo / "data/padded/train.npz")
    assert train["ids"].shape == (24, 150)

    assert repro(repo) == []

    set_params(repo, **{"pad.maxlen": 8})
    assert repro(repo) == ["pad"]
    assert np.load(repo / "data/padded/test.npz")["ids"].shape == (24, 8)

    set_params(repo, **{"tokenize.max_features": 5})
    assert repro(repo) == ["tokenize", "pad"]
    assert np.load(repo / "data/padded/train.npz")["ids"].max() <= 6
