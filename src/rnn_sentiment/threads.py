"""How many CPU threads a training takes: its share of the cores while DVC runs several at once.

`dvc queue start -j N` trains N experiments side by side, each in its own process, and PyTorch
gives each process one thread per core. N trainings on C cores then run N*C threads, and OpenMP's
threads spin while they wait for each other: two trainings on 2 cores ran each epoch 3.5 to 8
times slower than two on one thread each (docs/team.md). So a training counts the experiments DVC
is running right now (the queue's and the workspace's) and takes its share of the cores. Set
OMP_NUM_THREADS to decide for yourself; then it is left alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

# Where DVC keeps one `<id>/<id>.run` info file per experiment it runs, under the repository a
# queued experiment was started from (the experiment itself runs in a copy in `.dvc/tmp/exps/`).
EXPERIMENTS = Path(".dvc", "tmp", "exps")
RUN_INFO = "run/*/*.run"
RUNNING = 2  # dvc.repo.experiments.executor.base.TaskStatus.RUNNING


def share(cores: int, running: int) -> int:
    """Threads for each of `running` trainings that share `cores` cores: at least one."""
    return max(1, cores // max(1, running))


def repository(cwd: Path) -> Path:
    """The repository whose experiments run beside this one: `cwd`, or the repository a copy
    under `.dvc/tmp/exps/` was made from."""
    parts = cwd.resolve().parts
    return Path(*parts[: parts.index(".dvc")]) if ".dvc" in parts else cwd.resolve()


def running_experiments(repo: Path) -> int:
    """How many experiments DVC says it is running in `repo`, by their info files."""
    count = 0
    for info in (repo / EXPERIMENTS).glob(RUN_INFO):
        try:
            count += json.loads(info.read_text(encoding="utf-8")).get("status") == RUNNING
        except (OSError, ValueError, AttributeError):
            continue  # written or removed as we read it: that experiment is starting or done
    return count


def training_threads(environ: Mapping[str, str], cwd: Path, cores: int) -> int | None:
    """Threads for a training started in `cwd`, or None where OMP_NUM_THREADS already says."""
    if environ.get("OMP_NUM_THREADS"):
        return None
    return share(cores, running_experiments(repository(cwd)))


def available_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_share() -> int:
    """Give torch this training's share of the cores (unless OMP_NUM_THREADS says); return the
    threads it now uses."""
    threads = training_threads(os.environ, Path.cwd(), available_cores())
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
