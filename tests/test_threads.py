"""A training's share of the cores while DVC runs other experiments beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnn_sentiment import threads


@pytest.mark.parametrize(
    ("cores", "running", "expected"),
    [(2, 0, 2), (2, 1, 2), (2, 2, 1), (8, 2, 4), (8, 3, 2), (2, 4, 1), (1, 1, 1)],
)
def test_share_splits_the_cores_and_keeps_at_least_one(
    cores: int, running: int, expected: int
) -> None:
    assert threads.share(cores, running) == expected


def write_run_info(repo: Path, rev: str, status: int | str) -> None:
    folder = repo / threads.EXPERIMENTS / "run" / rev
    folder.mkdir(parents=True, exist_ok=True)
    text = status if isinstance(status, str) else json.dumps({"name": rev, "status": status})
    (folder / f"{rev}.run").write_text(text, encoding="utf-8")


def test_running_experiments_counts_only_the_running_ones(tmp_path: Path) -> None:
    assert threads.running_experiments(tmp_path) == 0
    write_run_info(tmp_path, "a1", threads.RUNNING)
    write_run_info(tmp_path, "b2", threads.RUNNING)
    write_run_info(tmp_path, "c3", threads.RUNNING + 1)  # finished
    write_run_info(tmp_path, "d4", '{"status": ')  # being written
    assert threads.running_experiments(tmp_path) == 2


def test_running_is_what_dvc_calls_running() -> None:
    from dvc.repo.experiments.executor.base import TaskStatus

    assert threads.RUNNING == TaskStatus.RUNNING


def test_a_queued_copy_counts_the_experiments_of_its_repository(tmp_path: Path) -> None:
    copy = tmp_path / threads.EXPERIMENTS / "tmpabc123"
    copy.mkdir(parents=True)
    write_run_info(tmp_path, "a1", threads.RUNNING)
    write_run_info(tmp_path, "b2", threads.RUNNING)
    assert threads.repository(copy) == tmp_path.resolve()
    assert threads.repository(tmp_path) == tmp_path.resolve()
    assert threads.training_threads({}, copy, cores=4) == 2
    assert threads.training_threads({}, tmp_path, cores=4) == 2


def test_omp_num_threads_wins(tmp_path: Path) -> None:
    write_run_info(tmp_path, "a1", threads.RUNNING)
    write_run_info(tmp_path, "b2", threads.RUNNING)
    assert threads.training_threads({"OMP_NUM_THREADS": "3"}, tmp_path, cores=4) is None
    assert threads.training_threads({"OMP_NUM_THREADS": ""}, tmp_path, cores=4) == 2


def test_use_share_sets_torch_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    for rev in ("a1", "b2", "c3", "d4"):
        write_run_info(tmp_path, rev, threads.RUNNING)
    try:
        assert threads.use_share() == 1
        (tmp_path / threads.EXPERIMENTS / "run" / "d4" / "d4.run").unlink()
        (tmp_path / threads.EXPERIMENTS / "run" / "c3" / "c3.run").unlink()
        assert threads.use_share() == 2
    finally:
        torch.set_num_threads(before)
