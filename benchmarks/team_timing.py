"""What a team's shared stores cost: the sample `dvc repro` against SQLite and against a tracking
server, and a queue of experiments run one or two at a time. Prints two tables for docs/team.md.

Runs in scratch repositories on the tiny synthetic archive, with throwaway servers on loopback
(PostgreSQL, moto's S3, `mlflow server`), as the team tests start them:

    python benchmarks/team_timing.py [--repeats 2] [--experiments 4]

The queue's experiments are tiny but not trivial (1,000 training reviews of about a hundred words,
a GRU of 128), each with its own seed so that no training is restored from DVC's run cache.
OMP_NUM_THREADS is unset for the queue rows unless a row says otherwise, so each training takes
the share of the cores that `rnn_sentiment.threads` gives it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnn_sentiment.threads import available_cores
from tests.conftest import build_archive, synthetic_review
from tests.sample_repo import dvc, make_sample_repo, run, set_params
from tests.team import queue, servers

QUEUE_TRAINING = {
    "train.model.embedding_dim": 64,
    "train.model.hidden_dim": 128,
    "train.epochs": 3,
    "train.patience": 3,
    "train.batch_size": 32,
    "pad.maxlen": 200,
}


def longer_review(label: int, index: int) -> str:
    """About a hundred words: eight of the tests' synthetic reviews in a row."""
    return " ".join(synthetic_review(label, index * 8 + k) for k in range(8))


@contextlib.contextmanager
def environment(**changes: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables while the block runs."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _setenv(name, value)
        yield
    finally:
        for name, value in saved.items():
            _setenv(name, value)


def _setenv(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def timed_repro(root: Path) -> tuple[float, float]:
    """Wall time of the sample `dvc repro` in a new repository (a new SQLite store is created on
    the way), then of a `dvc repro` after a change of `train.lr` (train and evaluate again)."""
    repo = make_sample_repo(root)
    start = time.perf_counter()
    dvc(repo, "repro")
    cold = time.perf_counter() - start
    set_params(repo, **{"train.lr": 0.02})
    start = time.perf_counter()
    dvc(repo, "repro")
    return cold, time.perf_counter() - start


def repro_rows(root: Path, repeats: int) -> list[tuple[str, list[tuple[float, float]]]]:
    """`timed_repro` against SQLite and against the server, alternating, `repeats` times each."""
    sqlite, server = [], []
    with (
        servers.postgres() as postgres,
        servers.s3_server() as s3,
    ):
        s3.create_bucket("team")
        database = servers.create_database(postgres, "mlflow")
        with servers.tracking_server(database, s3, "s3://team/mlflow") as (url, _):
            for attempt in range(repeats):
                store = f"sqlite:///{root / f'sqlite-{attempt}' / 'mlflow.db'}"
                with environment(MLFLOW_TRACKING_URI=store, MLFLOW_REGISTRY_URI=store):
                    sqlite.append(timed_repro(root / f"sqlite-{attempt}"))
                with environment(MLFLOW_TRACKING_URI=url, MLFLOW_REGISTRY_URI=url, **s3.env):
                    server.append(timed_repro(root / f"server-{attempt}"))
    return [("SQLite file (`sqlite:///mlflow.db`)", sqlite), ("tracking server", server)]


def queue_row(root: Path, jobs: int, experiments: int, omp: str | None, first_seed: int) -> dict:
    """Queue `experiments` trainings, run them `jobs` at a time; wall time and seconds per epoch."""
    archive = build_archive(root / "archive.tar.gz", per_class=500, text=longer_review)
    repo = make_sample_repo(root, archive, **QUEUE_TRAINING)
    (repo / ".gitignore").write_text("/mlflow.db\n/mlflow.db.lock\n/mlartifacts/\n")
    dvc(repo, "repro", "pad")  # the data stages once; the queued experiments restore them
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    for seed in range(first_seed, first_seed + experiments):
        dvc(repo, "exp", "run", "--queue", "-S", f"base.seed={seed}")
    load = os.getloadavg()[0]
    stores = {"MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}  # the default store
    with environment(OMP_NUM_THREADS=omp, MKL_NUM_THREADS=omp, **stores):
        start = time.perf_counter()
        found = queue.run_queue(repo, jobs)
        wall = time.perf_counter() - start
    assert set(found.values()) == {"Success"}, queue.failure_logs(repo, found)
    per_epoch = []
    for baseline in json.loads(dvc(repo, "exp", "show", "--json")):
        for exp in baseline.get("experiments") or []:
            train = exp["revs"][0]["data"]["metrics"]["metrics/train.json"]["data"]
            per_epoch.append(train["train_seconds"] / train["epochs_run"])
    return {"wall": wall, "per_epoch": per_epoch, "load": load}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--experiments", type=int, default=4)
    args = parser.parse_args()
    print(f"{available_cores()} cores, load average {os.getloadavg()[0]:.1f} at the start\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = repro_rows(Path(tmp), args.repeats)
    print("| store | sample `dvc repro`, new repository | again after `train.lr` changed |")
    print("|---|---|---|")
    for name, times in rows:
        cold = ", ".join(f"{t:.1f} s" for t, _ in times)
        print(f"| {name} | {cold} | {', '.join(f'{t:.1f} s' for _, t in times)} |")

    print("\n| queue | threads per training | seconds per epoch | total wall | load at start |")
    print("|---|---|---|---|---|")
    configs = [
        (1, None, "its share (2)"),
        (1, "1", "1 (OMP_NUM_THREADS=1)"),
        (2, None, "its share (1 each while two run)"),
        (2, "2", "2 (OMP_NUM_THREADS=2)"),
    ]
    for index, (jobs, omp, threads) in enumerate(configs):
        with tempfile.TemporaryDirectory() as tmp:
            row = queue_row(Path(tmp), jobs, args.experiments, omp, 100 * (index + 1))
        epochs = ", ".join(f"{s:.1f}" for s in sorted(row["per_epoch"]))
        print(
            f"| {args.experiments} experiments, `-j {jobs}` | {threads} | {epochs} | "
            f"{row['wall']:.0f} s | {row['load']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
