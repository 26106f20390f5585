"""DVCLive's files, written epoch by epoch, in a repository with and without a commit."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from dvc.repo import Repo

from rnn_sentiment import live
from tests.sample_repo import GIT_IDENTITY


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "no-commit-yet"])
def test_epochs_reach_dvclive_files(
    committed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Repo.init(str(tmp_path)).close()
    if committed:
        for name, value in GIT_IDENTITY.items():
            monkeypatch.setenv(name, value)
        subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "dvc init"], check=True)
    monkeypatch.chdir(tmp_path)

    with live.open_live(Path("dvclive")) as logger:
        live.log_epoch(logger, {"val_loss": 0.7, "val_accuracy": 0.5}, epoch=1)
        assert json.loads(Path("dvclive/metrics.json").read_text())["step"] == 1
        live.log_epoch(logger, {"val_loss": 0.6, "val_accuracy": 0.75}, epoch=2)

    assert json.loads(Path("dvclive/metrics.json").read_text()) == {
        "val_loss": 0.6,
        "val_accuracy": 0.75,
        "step": 2,
    }
    with Path("dvclive/plots/metrics/val_loss.tsv").open() as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    assert [(row["step"], row["val_loss"]) for row in rows] == [("1", "0.7"), ("2", "0.6")]
    assert not Path("dvclive/dvc.yaml").exists() and not Path("dvc.yaml").exists()
