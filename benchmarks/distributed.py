"""Throughput of the train stage with 1 and with 2 workers (DistributedDataParallel) on this CPU.

Runs `python -m rnn_sentiment.stages.train` on synthetic padded reviews once per run, a run being
a number of workers and the CPU threads they share (`2:2`: 2 workers of 1 thread each), all with
the same params and global batch and their own MLflow store in a temporary folder. Prints one
table, with the machine's load average: other work on the same cores skews every figure.

    python benchmarks/distributed.py [--rows 4000] [--runs 1:1 1:2 2:2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnn_sentiment import text
from rnn_sentiment.files import write_npz
from rnn_sentiment.params import TokenizeParams

VOCAB = 5000
CUES = 20  # word ids per sentiment that carry it


def synthetic_reviews(rows: int, maxlen: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Padded reviews of Zipf-distributed words, 20 to `maxlen` long, half of them positive, with
    three cue words of their sentiment planted: learnable, with IMDB-like lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, maxlen + 1, rows)
    words = (rng.zipf(1.2, (rows, maxlen)) % (VOCAB - 2 - 2 * CUES)) + 2 + 2 * CUES
    labels = rng.integers(0, 2, rows)
    for _ in range(3):
        at = (rng.random(rows) * lengths).astype(int)
        words[np.arange(rows), at] = 2 + labels * CUES + rng.integers(0, CUES, rows)
    ids = np.where(np.arange(maxlen) < lengths[:, None], words, 0).astype(np.int32)
    groups = np.arange(rows, dtype=np.int32)  # every review its own movie
    return {
        "ids": ids,
        "lengths": lengths.astype(np.int32),
        "labels": labels.astype(np.int8),
        "groups": groups,
    }


def prepare(root: Path, rows: int, maxlen: int, epochs: int) -> list[str]:
    """Inputs and params of one training under `root`; returns the stage's arguments."""
    write_npz(root / "train.npz", **synthetic_reviews(rows, maxlen))
    words = " ".join(f"w{i}" for i in range(VOCAB - 2))
    text.fit([words], TokenizeParams(max_features=VOCAB)).save(str(root / "tokenizer.json"))
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["train"]["epochs"] = params["train"]["patience"] = epochs
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return [
        f"--params={root / 'params.yaml'}",
        f"--padded-dir={root}",
        f"--tokenizer={root / 'tokenizer.json'}",
        f"--model-dir={root / 'models'}",
        f"--metrics={root / 'train.json'}",
        f"--curve={root / 'curve.csv'}",
    ]


def train(args: list[str], root: Path, workers: int, threads: int) -> dict[str, float]:
    """One training of `workers` processes sharing `threads`; its wall time and metrics."""
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["distributed"] = {"workers": workers, "nodes": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),  # the budget, shared by the workers
        "MKL_NUM_THREADS": str(threads),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / f'mlflow-{workers}.db'}",
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rnn_sentiment.stages.train", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"training with {workers} workers failed:\n{done.stderr}")
    return json.loads((root / "train.json").read_text(encoding="utf-8")) | {"wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="reviews, before validation")
    parser.add_argument("--maxlen", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2)
    cores = torch.get_num_threads()
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["1:1", f"1:{cores}", f"2:{cores}"],
        help="WORKERS:THREADS, threads in all",
    )
    args = parser.parse_args()
    runs = [tuple(int(part) for part in run.split(":")) for run in args.runs]
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stage_args = prepare(Path(tmp), args.rows, args.maxlen, args.epochs)
        for workers, threads in runs:
            results.append((workers, threads, train(stage_args, Path(tmp), workers, threads)))
    print(
        f"{args.rows} synthetic reviews (90% trained on), maxlen {args.maxlen}, params.yaml's "
        f"model, {args.epochs} epochs, {os.cpu_count()} cores; "
        f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print("| workers | threads each | stage wall | train time | reviews/s | best val loss |")
    print("|---|---|---|---|---|---|")
    trained = round(args.rows * 0.9)
    for workers, threads, metrics in results:
        rate = trained * metrics["epochs_run"] / metrics["train_seconds"]
        print(
            f"| {workers} | {max(1, threads // workers)} | {metrics['wall']:.1f} s "
            f"| {metrics['train_seconds']:.1f} s | {rate:,.0f} | {metrics['best_val_loss']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
