"""Distributed training: two CPU processes over gloo against one process, on tiny data."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer
from torch import nn

from rnn_sentiment import checkpoint, distributed, training
from rnn_sentiment.distributed import Shard
from rnn_sentiment.errors import UserError
from rnn_sentiment.files import write_npz
from rnn_sentiment.params import DistributedParams, ModelParams, TrainParams
from rnn_sentiment.stages import train
from tests.conftest import synthetic_padded
from tests.mlflow_server import free_port
from tests.sample_repo import make_sample_repo, repro

CPU = torch.device("cpu")
TWO = DistributedParams(workers=2)
# An odd global batch over 108 training rows: batches split 4 + 3 between the ranks, the last one
# (3 rows) 2 + 1. Dropout off, so one process and two see the same model function.
TINY = TrainParams(
    model=ModelParams(cell="gru", embedding_dim=8, hidden_dim=8, bigrams=20),
    lr=0.01,
    batch_size=7,
    epochs=3,
    patience=3,
)


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, np.ndarray], Tokenizer]:
    arrays, tokenizer = synthetic_padded(per_class=60)
    return arrays, tokenizer


class _Alone(Shard):
    """A rank of a two-process training, run alone: its sums are its own (no process group)."""

    def sum(self, *values: float) -> list[float]:
        return list(values)


@pytest.mark.parametrize("rows", [5, 1])
def test_the_ranks_mean_gradient_is_the_whole_batch_gradient(rows: int) -> None:
    """The ranks' losses, averaged as DDP averages their gradients, give one process's step on
    the whole batch (the plain gradient of its mean loss): with rows split 3 + 2, and with one
    row, where rank 1 has none."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 1), nn.Flatten(0))  # one logit per one-token row
    data = training.Split(torch.arange(2, 2 + rows).unsqueeze(1), torch.arange(rows) % 2.0)

    def step(shard: Shard) -> torch.Tensor:
        copied = copy.deepcopy(model)
        sgd = torch.optim.SGD(copied.parameters(), lr=1.0)  # the step is minus the gradient
        schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0)
        batch = [np.arange(rows)]
        training.train_one_epoch(copied, data, batch, sgd, schedule, CPU, None, shard=shard)
        return copied[0].weight.detach() - model[0].weight.detach()

    mean_loss = nn.functional.binary_cross_entropy_with_logits(model(data.ids), data.labels)
    (gradient,) = torch.autograd.grad(mean_loss, model[0].weight)
    alone = step(distributed.SINGLE)
    torch.testing.assert_close(alone, -gradient)
    ranks = (step(_Alone(0, 2)) + step(_Alone(1, 2))) / 2
    torch.testing.assert_close(ranks, alone)


def test_a_rank_left_without_rows_runs_a_stand_in_row_of_weight_zero() -> None:
    index = np.array([7, 8])
    assert [(list(rows), weight) for rows, weight in [Shard(1, 3).batch(index)]] == [([8], 3)]
    rows, weight = Shard(2, 3).batch(index)
    assert list(rows) == [7] and weight == 0


def run_ranks(arrays: dict[str, np.ndarray], tokenizer: Tokenizer, params: TrainParams) -> dict:
    """Launched on each rank: train, and return what the test compares."""
    shard, device = distributed.join(params.distributed, CPU)
    result = train.run(params, 0, arrays, tokenizer, device, shard=shard)
    return {
        "state": result.model.state_dict(),
        "val_loss": [stats.val_loss for stats in result.history],
        "train_loss": [stats.train_loss for stats in result.history],
    }


def test_two_workers_train_as_one_process_with_the_same_global_batch(data) -> None:
    arrays, tokenizer = data
    params = TINY.model_copy(update={"distributed": TWO})
    first = distributed.launch(run_ranks, (arrays, tokenizer, params), TWO)
    again = distributed.launch(run_ranks, (arrays, tokenizer, params), TWO)
    alone = train.run(TINY, 0, arrays, tokenizer, CPU)

    assert sorted(first) == [0, 1]
    for key, tensor in first[0]["state"].items():  # every rank ends with the same model
        assert torch.equal(tensor, first[1]["state"][key]), key
    assert first[0]["val_loss"] == first[1]["val_loss"]  # hence the same early stopping
    assert first[0]["val_loss"] == again[0]["val_loss"]  # reproducible run to run
    for key, tensor in first[0]["state"].items():
        assert torch.equal(tensor, again[0]["state"][key]), key
    # Same batches and gradients but for float rounding: the gradient is summed over each rank's
    # rows, then across ranks, not over the batch in one go, so weights differ by ~1e-7 and the
    # losses by ~1e-7 relative after these 3 epochs (measured; 3e-6 after 8). A loss weighted by
    # the rank's rows instead of the batch's would be off by ~1e-2.
    val_loss = [stats.val_loss for stats in alone.history]
    np.testing.assert_allclose(first[0]["val_loss"], val_loss, rtol=1e-5)
    train_loss = [stats.train_loss for stats in alone.history]
    np.testing.assert_allclose(first[0]["train_loss"], train_loss, rtol=1e-5)


def stage_files(root: Path, arrays: dict, tokenizer, params: TrainParams) -> list[str]:
    """The train stage's inputs under `root`; returns its arguments, outputs under `root/out`."""
    write_npz(root / "train.npz", **arrays)
    tokenizer.save(str(root / "tokenizer.json"))
    raw = {"base": {"seed": 0}, "train": params.model_dump(mode="json")}
    (root / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = root / "out"
    return [
        f"--params={root / 'params.yaml'}",
        f"--padded-dir={root}",
        f"--tokenizer={root / 'tokenizer.json'}",
        f"--model-dir={out / 'models'}",
        f"--metrics={out / 'train.json'}",
        f"--curve={out / 'curve.csv'}",
        f"--live-dir={out / 'dvclive'}",
    ]


def mlflow_runs() -> list:
    import mlflow

    return mlflow.search_runs(experiment_names=["rnn-sentiment"], output_format="list")


def test_the_stage_with_two_workers_logs_one_run_and_writes_its_outputs_once(tmp_path) -> None:
    arrays, tokenizer = synthetic_padded(per_class=60)
    args = stage_files(tmp_path, arrays, tokenizer, TINY.model_copy(update={"distributed": TWO}))

    assert train.main(args) == 0

    runs = mlflow_runs()
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["train.distributed.workers"] == "2"
    metrics = json.loads((tmp_path / "out/train.json").read_text(encoding="utf-8"))
    assert metrics["epochs_run"] == 3
    loaded = checkpoint.load(tmp_path / "out/models" / checkpoint.MODEL_FILE)  # serving's format
    assert loaded.model.config.bigrams == 20
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "curve.csv",
        "dvclive",
        "models",
        "train.json",
    ]


def fail_on_rank_1(args: list[str]) -> int:
    """Launched on each rank: the train stage, but rank 1 fails in its second epoch."""
    if os.environ["RANK"] == "1":
        one_epoch = training.train_one_epoch
        epochs = iter(range(1, 100))

        def failing(*pargs, **kwargs):
            if next(epochs) == 2:
                raise UserError("out of disk on rank 1's scratch space: free some")
            return one_epoch(*pargs, **kwargs)

        training.train_one_epoch = failing
    return train.main.__wrapped__(args)  # as `launch` runs it: errors reach the launcher


def test_a_failing_rank_stops_every_rank_with_one_line_and_no_outputs(tmp_path, capfd) -> None:
    arrays, tokenizer = synthetic_padded(per_class=60)
    args = stage_files(tmp_path, arrays, tokenizer, TINY.model_copy(update={"distributed": TWO}))

    with pytest.raises(UserError) as failure:
        distributed.launch(fail_on_rank_1, (args,), TWO)

    assert str(failure.value) == (
        "rank 1 failed, every rank stopped: out of disk on rank 1's scratch space: free some"
    )
    # DVCLive's per-epoch files are progress, written as the epochs go; no result is written.
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["dvclive"]
    runs = mlflow_runs()
    assert len(runs) == 1 and runs[0].info.status == "FAILED"  # rank 0's run, not left running
    err = capfd.readouterr().err
    assert "Traceback" not in err and "torch" not in err  # no rank, agent or torch log spoke


def stage_then_group(args: list[str]) -> tuple[int, bool]:
    """Launched on each rank: the train stage, then whether this rank is still in the group."""
    return train.main.__wrapped__(args), torch.distributed.is_initialized()


def test_every_rank_leaves_the_process_group_when_the_stage_succeeds(tmp_path) -> None:
    """Not left to the exit handler, where a rank done training tore the group down while its
    peer still worked, and aborted."""
    arrays, tokenizer = synthetic_padded(per_class=60)
    args = stage_files(tmp_path, arrays, tokenizer, TINY.model_copy(update={"distributed": TWO}))

    assert distributed.launch(stage_then_group, (args,), TWO) == {0: (0, False), 1: (0, False)}
    assert (tmp_path / "out/train.json").exists()


def test_one_worker_trains_in_this_process_exactly_as_before(tmp_path, data) -> None:
    arrays, tokenizer = synthetic_padded(per_class=60)
    args = stage_files(tmp_path, arrays, tokenizer, TINY)

    assert train.main(args) == 0

    alone = train.run(TINY, 0, arrays, tokenizer, CPU)
    metrics = json.loads((tmp_path / "out/train.json").read_text(encoding="utf-8"))
    expected = alone.metrics | {"device": "cpu"}
    assert {k: v for k, v in metrics.items() if k != "train_seconds"} == {
        k: v for k, v in expected.items() if k != "train_seconds"
    }


def test_a_launcher_decides_the_processes_and_params_must_agree(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert not distributed.must_launch(TWO)  # torchrun started this process: it is a worker
    with pytest.raises(UserError, match=r"started 4 processes.*2 workers x 1 nodes = 2"):
        distributed.join(TWO, CPU)


def test_several_nodes_need_node_0_and_their_rank_from_the_environment() -> None:
    nodes = DistributedParams(workers=2, nodes=2)
    with pytest.raises(UserError, match="set MASTER_PORT, NODE_RANK on every node"):
        distributed._rendezvous(nodes, {"MASTER_ADDR": "node0"})
    with pytest.raises(UserError, match=r"NODE_RANK is '2': set it to 0\.\.1"):
        distributed._rendezvous(
            nodes, {"MASTER_ADDR": "node0", "MASTER_PORT": "29500", "NODE_RANK": "2"}
        )
    config = distributed._rendezvous(
        nodes, {"MASTER_ADDR": "node0", "MASTER_PORT": "29500", "NODE_RANK": "1"}
    )
    assert config == {
        "rdzv_backend": "static",
        "rdzv_endpoint": "node0:29500",
        "rdzv_configs": {"rank": 1},
    }


def stage(args: list[str], **env: str) -> subprocess.Popen:
    """The train stage as its own process, as `dvc repro` or a node's shell starts it."""
    command = [sys.executable, "-m", "rnn_sentiment.stages.train", *args]
    return subprocess.Popen(command, env=os.environ | env, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err


@pytest.mark.e2e
def test_torchrun_starts_the_stage_as_its_workers(tmp_path) -> None:
    arrays, tokenizer = synthetic_padded(per_class=60)
    args = stage_files(tmp_path, arrays, tokenizer, TINY.model_copy(update={"distributed": TWO}))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    torchrun.append(f"--log-dir={tmp_path / 'torchrun'}")  # not a folder of its own in /tmp
    done = subprocess.run(
        [*torchrun, "-m", "rnn_sentiment.stages.train", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert [run.info.status for run in mlflow_runs()] == ["FINISHED"]
    assert (tmp_path / "out/train.json").is_file()


@pytest.mark.e2e
def test_two_nodes_meet_at_node_0_which_alone_writes(tmp_path) -> None:
    arrays, tokenizer = synthetic_padded(per_class=60)
    nodes = DistributedParams(workers=1, nodes=2)
    args = stage_files(tmp_path, arrays, tokenizer, TINY.model_copy(update={"distributed": nodes}))
    elsewhere = [arg.replace(str(tmp_path / "out"), str(tmp_path / "node1")) for arg in args]
    meet = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    node0 = stage(args, NODE_RANK="0", **meet)
    node1 = stage(elsewhere, NODE_RANK="1", **meet)
    finished(node0)
    finished(node1)
    assert [run.info.status for run in mlflow_runs()] == ["FINISHED"]
    assert (tmp_path / "out/train.json").is_file()
    assert not (tmp_path / "node1").exists()


@pytest.mark.e2e
def test_dvc_repro_trains_with_two_workers(tmp_path) -> None:
    repo = make_sample_repo(tmp_path, **{"train.distributed.workers": 2})
    assert repro(repo) == ["validate", "download", "tokenize", "pad", "train", "evaluate"]
    (run,) = mlflow_runs()
    assert run.data.params["train.distributed.workers"] == "2"
    assert "test_accuracy" in run.data.metrics
