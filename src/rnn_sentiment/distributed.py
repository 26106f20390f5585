"""Training on several processes: DistributedDataParallel, started by PyTorch's elastic launcher.

With `train.distributed.workers` (or `nodes`) above 1, the train stage's `main` calls `launch`,
which starts the workers through `torch.distributed.launcher.elastic_launch`, the engine behind
`torchrun`; each worker re-enters the same `main`, where `join` puts it in the process group. A
stage started by `torchrun` itself is already a worker and goes straight to `join`. Either way
there is one training script, and the stage's params say how many processes take part.

Every rank builds the same batch plan from the seed and trains on its rows of each batch
(`Shard`); rank 0 alone tracks the run and writes outputs. A failure on any rank stops them all,
and the launcher reports the first one as one line.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from rnn_sentiment.errors import UserError
from rnn_sentiment.files import write_json
from rnn_sentiment.params import DistributedParams

WORKER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun and `launch` give each worker
NODE_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK")  # what each node of several must be told
RUN_ID = "rnn-sentiment-train"
AGENT_LOGGERS = ("torch.distributed", "torch.multiprocessing")  # what the launcher logs through


@dataclass(frozen=True)
class Shard:
    """This process's part of a training: rank `rank` of `world` processes.

    With one process (`SINGLE`) every method is the identity and touches no process group, so the
    single-process training does the very arithmetic it did before distributed training existed.
    """

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that tracks the run and writes the outputs."""
        return self.rank == 0

    def rows(self, index: np.ndarray) -> np.ndarray:
        """This rank's rows of `index`: every `world`-th, from its rank on. A bucketed batch is
        sorted by length, so striding gives every rank the same mix of lengths and work."""
        return index[self.rank :: self.world]

    def batch(self, index: np.ndarray) -> tuple[np.ndarray, int]:
        """This rank's rows of a training batch, and the weight of their summed loss.

        DDP averages the ranks' gradients, so a rank's loss is its rows' sum times `world`,
        divided by the whole batch's rows: the average is then the single-process gradient of the
        whole batch, however unevenly its rows divide. A batch with fewer rows than ranks leaves
        some rank none; it runs one row with weight 0, as DDP needs every rank in each all-reduce.
        """
        rows = self.rows(index)
        if len(rows) == 0:
            return index[:1], 0
        return rows, self.world

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (float64, so counts stay exact)."""
        if self.world == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(total)
        return total.tolist()

    def gather(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """The values each rank computed for its `rows(np.arange(total))`, put back in row order:
        the same tensor on every rank, so decisions taken from it agree everywhere."""
        if self.world == 1:
            return local
        size = -(-total // self.world)
        padded = torch.zeros(size, dtype=local.dtype, device=_collective_device())
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        whole = torch.empty(total, dtype=local.dtype)
        for rank, part in enumerate(parts):
            whole[rank :: self.world] = part[: len(range(rank, total, self.world))].cpu()
        return whole

    def leave(self) -> None:
        """Leave the process group with every other rank, once training has ended well.

        Otherwise the exit handler destroys the group at interpreter exit, when a rank done
        training may still have a peer at work: once in CI that teardown aborted a rank
        (SIGABRT, "terminate called without an active exception", from gloo's threads) and failed
        a training that had succeeded. Here every rank waits for the others, then lets go while
        the interpreter is whole; the exit handler stays for the ranks a failure stops.
        """
        if self.world == 1 or not dist.is_initialized():
            return
        dist.barrier()
        dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """`model` as it trains: in DistributedDataParallel across ranks, itself alone.

        DDP copies rank 0's weights and buffers to every rank once, then not on each step: the
        only buffers, the learned n-gram keys, are fixed before training. Each rank then draws
        its own dropout masks, as the rows of one batch do in a single process.
        """
        if self.world == 1:
            return model
        torch.manual_seed(torch.initial_seed() + self.rank)
        device_ids = [device] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, forward_sync_buffers=False
        )


SINGLE = Shard()


def _collective_device() -> torch.device:
    """Where tensors for a collective live: nccl moves CUDA tensors only, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def is_worker(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process was started as one rank of several (by `launch` or `torchrun`)."""
    return all(name in env for name in WORKER_ENV)


def must_launch(params: DistributedParams, env: Mapping[str, str] = os.environ) -> bool:
    """Whether the stage must start its workers: params ask for more than one process, and no
    launcher has started this one as a worker."""
    return params.workers * params.nodes > 1 and not is_worker(env)


def join(params: DistributedParams, device: torch.device) -> tuple[Shard, torch.device]:
    """This process's shard and device. A worker joins the process group (gloo on CPU; nccl on
    CUDA, with the GPU of its local rank); a lone process gets `SINGLE` and `device` as it is."""
    if not is_worker():
        return SINGLE, device
    world = int(os.environ["WORLD_SIZE"])
    expected = params.workers * params.nodes
    if world != expected:
        raise UserError(
            f"the launcher started {world} processes, train.distributed asks for "
            f"{params.workers} workers x {params.nodes} nodes = {expected}: make them agree"
        )
    if world == 1:
        return SINGLE, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return Shard(dist.get_rank(), world), device


def launch(
    entry: Callable[..., Any], args: tuple[Any, ...], params: DistributedParams
) -> dict[int, Any]:
    """Run `entry(*args)` in `params.workers` processes on this machine, ranks of one training
    with the processes the other nodes start; wait for all of them.

    Each worker gets an equal share of this process's CPU threads. Local ranks other than 0 write
    their console output to files that go when the training ends: what matters comes back here.
    Returns each rank's return value by global rank; raises `UserError` naming the first rank
    that failed and why, after every rank has been stopped.
    """
    _check_gpus(params.workers)
    threads = max(1, torch.get_num_threads() // params.workers)
    with tempfile.TemporaryDirectory(prefix="rnn-sentiment-ranks-") as tmp:
        failures = Path(tmp) / "failures"
        config = LaunchConfig(
            min_nodes=params.nodes,
            max_nodes=params.nodes,
            nproc_per_node=params.workers,
            run_id=RUN_ID,
            max_restarts=0,  # a training that failed fails again: report it, do not retrain
            logs_specs=DefaultLogsSpecs(
                log_dir=str(Path(tmp) / "logs"),
                redirects={rank: Std.ALL for rank in range(1, params.workers)},
            ),
            **_rendezvous(params, os.environ),
        )
        try:
            with _quiet_agent():
                return elastic_launch(config, _worker)(entry, threads, str(failures), *args)
        except ChildFailedError as err:
            message, where = _first_failure(failures, err)
            if where:  # a bug rather than a bad input: show where it happened
                print(where, end="", file=sys.stderr)
            raise UserError(message) from None
        except SignalException as err:
            raise SystemExit(128 + err.sigval) from None


def _check_gpus(workers: int) -> None:
    if torch.cuda.is_available() and workers > torch.cuda.device_count():
        raise UserError(
            f"train.distributed.workers is {workers}, but this machine has "
            f"{torch.cuda.device_count()} GPUs: one worker per GPU, so lower it"
        )


def _rendezvous(params: DistributedParams, env: Mapping[str, str]) -> dict[str, Any]:
    """Where the nodes meet. One node: a store on a free local port. Several: node 0's address
    and port and this node's rank from the environment, as torchrun's static rendezvous takes
    them, so that global rank 0, which writes the outputs, is on the node told `NODE_RANK=0`."""
    if params.nodes == 1:
        return {"rdzv_backend": "c10d", "rdzv_endpoint": "127.0.0.1:0", "local_addr": "127.0.0.1"}
    missing = [name for name in NODE_ENV if not env.get(name)]
    if missing:
        raise UserError(
            f"train.distributed.nodes is {params.nodes}: set {', '.join(missing)} on every node "
            "(node 0's address, a free port on it, and this node's rank: 0 where the outputs "
            "go); see docs/distributed.md"
        )
    rank = env["NODE_RANK"]
    if not rank.isdigit() or int(rank) >= params.nodes:
        raise UserError(
            f"NODE_RANK is {rank!r}: set it to 0..{params.nodes - 1}, a different one per node"
        )
    return {
        "rdzv_backend": "static",
        "rdzv_endpoint": f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
        "rdzv_configs": {"rank": int(rank)},
    }


def _worker(entry: Callable[..., Any], threads: int, failures: str, *args: Any) -> Any:
    """What each launched process runs: its share of threads, then `entry` undecorated, so that a
    failure, a `UserError` included, reaches this function and is written down for the launcher
    to report once, instead of each rank printing its own."""
    # Two workers on two cores with two threads each run about ten times slower, not faster.
    torch.set_num_threads(threads)
    try:
        return inspect.unwrap(entry)(*args)
    except Exception as err:
        rank = int(os.environ["RANK"])
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        message = (message.splitlines() or [type(err).__name__])[0]  # torch's may span lines
        record = {
            "rank": rank,
            "time": time.time(),  # the first failure is the cause; the others its consequence
            "message": message,
            "traceback": None if isinstance(err, UserError) else traceback.format_exc(),
        }
        write_json(record, Path(failures) / f"rank-{rank}.json")
        raise SystemExit(1) from None


def _first_failure(failures: Path, err: ChildFailedError) -> tuple[str, str | None]:
    """One line on the failure that stopped the training, and its traceback unless it was a
    `UserError`: the earliest failure a rank wrote down (a rank that lost its peer fails later),
    else the launcher's word on a rank that died without writing one."""
    records = [json.loads(path.read_text(encoding="utf-8")) for path in failures.glob("*.json")]
    if records:
        first = min(records, key=lambda record: record["time"])
        message = f"rank {first['rank']} failed, every rank stopped: {first['message']}"
        return message, first["traceback"]
    rank, failure = err.get_first_failure()
    how = (
        f"killed by {failure.signal_name()}"
        if failure.exitcode < 0
        else f"exit code {failure.exitcode}"
    )
    return f"rank {rank} failed, every rank stopped: {how}", None


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """Silence the elastic agent's warnings and per-rank tracebacks while it runs: `launch`
    reports what failed, once. `LOGLEVEL` (torch's own switch for these logs) overrides it."""
    if os.environ.get("LOGLEVEL"):
        yield
        return
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(AGENT_LOGGERS)
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
