"""Serving speed of one trained model: batch throughput and single-review latency, through the
Python API (`Predictor`) and through MLflow's HTTP server (`mlflow models serve`). Prints one table.

    python benchmarks/serving_latency.py [models] [--model-uri URI] [--reviews 2000] [--singles 200]
        [--threads N]

Reviews are the test split of data/raw/reviews.parquet when the pipeline has fetched it, else
synthetic ones of IMDB's typical length. The HTTP row serves `--model-uri`, else the `model_uri`
the train stage wrote to `<models>/mlflow_run.json`, from the store `MLFLOW_TRACKING_URI` names
(default: ./mlflow.db). Batches go over HTTP as `{"inputs": [...]}` of `--http-batch` reviews.
`--threads` sets torch's threads in both (the server's through OMP_NUM_THREADS): on a busy
machine, threads that wait for a core cost a small model more than they give it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnn_sentiment.checkpoint import RUN_FILE
from rnn_sentiment.serving import BATCH_SIZE, Predictor, serving_dtype
from tests.mlflow_server import invoke, mlflow_server

REVIEWS_TABLE = Path("data/raw/reviews.parquet")
WORDS = [
    "the",
    "film",
    "plot",
    "actor",
    "scene",
    "story",
    "music",
    "ending",
    "great",
    "awful",
    "boring",
    "moving",
    "dull",
    "superb",
]
WARMUP = 5


def load_reviews(count: int) -> tuple[list[str], str]:
    """`count` test reviews (seeded sample) and where they came from."""
    if REVIEWS_TABLE.is_file():
        table = pd.read_parquet(REVIEWS_TABLE, columns=["split", "text"])
        test = table.loc[table["split"] == "test", "text"]
        return test.sample(min(count, len(test)), random_state=0).tolist(), str(REVIEWS_TABLE)
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 400, size=count)  # IMDB reviews: median about 170 words
    return [" ".join(rng.choice(WORDS, size=n)) for n in lengths], "synthetic"


def measure(
    batch: Callable[[list[str]], object],
    single: Callable[[str], object],
    reviews: list[str],
    singles: int,
) -> tuple[float, float, float]:
    """Reviews per second for all `reviews` at once; p50 and p95 milliseconds for one review."""
    for review in reviews[:WARMUP]:
        single(review)
    start = time.perf_counter()
    batch(reviews)
    throughput = len(reviews) / (time.perf_counter() - start)
    latencies = []
    for review in reviews[:singles]:
        start = time.perf_counter()
        single(review)
        latencies.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(latencies, [50, 95])
    return throughput, float(p50), float(p95)


def measure_http(
    model_uri: str, reviews: list[str], singles: int, http_batch: int
) -> tuple[float, float, float]:
    def post(chunk: list[str]) -> None:
        status, body = invoke(url, {"inputs": chunk})
        if status != 200:
            raise RuntimeError(f"the server answered {status}: {body}")

    def batch(all_reviews: list[str]) -> None:
        for start in range(0, len(all_reviews), http_batch):
            post(all_reviews[start : start + http_batch])

    with mlflow_server(model_uri) as url:
        return measure(batch, lambda review: post([review]), reviews, singles)


def model_uri_of(model_dir: Path, given: str | None) -> str | None:
    if given:
        return given
    run_file = model_dir / RUN_FILE
    return json.loads(run_file.read_text())["model_uri"] if run_file.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=Path("models"))
    parser.add_argument("--model-uri", help="MLflow model URI to serve over HTTP")
    parser.add_argument("--reviews", type=int, default=2000, help="reviews in the batch run")
    parser.add_argument("--singles", type=int, default=200, help="one-review calls timed")
    parser.add_argument("--http-batch", type=int, default=BATCH_SIZE)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the server
    reviews, source = load_reviews(args.reviews)
    # float32 always; the default (`auto`) too where it picks another dtype, with how far its
    # probabilities move from float32's.
    exact = Predictor.from_dir(args.model_dir, precision="float32")
    predictors = {"float32": exact}
    auto = serving_dtype("auto", exact.device)
    if auto != torch.float32:
        predictor = Predictor.from_dir(args.model_dir)
        name = f"auto: {str(auto).removeprefix('torch.')}"
        if predictor.float32_below > 1:  # smaller calls run in float32
            name += f" from {predictor.float32_below} reviews"
        predictors[name] = predictor
    reference = exact.predict_proba(reviews)
    rows, moved = {}, {}
    for name, predictor in predictors.items():
        rows[f"Python API, {name}"] = measure(
            predictor.predict_proba,
            lambda r, p=predictor: p.predict_proba([r]),
            reviews,
            args.singles,
        )
        moved[name] = np.abs(predictor.predict_proba(reviews) - reference).max()
    model_uri = model_uri_of(args.model_dir, args.model_uri)
    if model_uri:
        rows[f"HTTP {model_uri}"] = measure_http(model_uri, reviews, args.singles, args.http_batch)
    words = statistics.mean(len(review.split()) for review in reviews)
    print(
        f"{len(reviews)} reviews from {source} (mean {words:.0f} words), model {args.model_dir}, "
        f"{exact.device.type}, {torch.get_num_threads()} torch threads"
    )
    print(f"{'path':<48} {'batch reviews/s':>16} {'single p50 ms':>14} {'single p95 ms':>14}")
    for name, (throughput, p50, p95) in rows.items():
        print(f"{name:<48} {throughput:>16.0f} {p50:>14.2f} {p95:>14.2f}")
    for name, change in moved.items():
        print(f"{name}: probabilities differ from float32's by at most {change:.4f}")
    if not model_uri:
        print(
            f"(no HTTP row: pass --model-uri, or train so that {args.model_dir / RUN_FILE} exists)"
        )


if __name__ == "__main__":
    main()
