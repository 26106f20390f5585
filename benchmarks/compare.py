"""The tutorial, the presets and a linear baseline side by side, each measured in one run:
accuracy, the pipeline's wall time and memory, serving speed and behaviour. Prints one table.

Every row trains from scratch on the same archive's train split (the presets through the
pipeline's own stage functions, as `dvc repro` runs them, from reading the archive to scoring the
test split) and is scored once on its test split, in a process of its own. Its pipeline wall and
peak memory are read before serving is timed; one process runs every stage, so that peak is the
largest stage's or more. Serving is timed through `Predictor` (a batch of 2,000 test reviews;
the p50 of 200 single-review calls) at its default precision, and for `best` at int8 too, whose
test accuracy is then scored through that path. Behaviour: failure rates of
benchmarks/behaviour.py.

    python benchmarks/compare.py --archive ../shared/data/aclImdb_v1_labelled.tar.gz \
        --sha256 0aa235d24bbdc17f53c2dd2c3afde1ea5842464e2bfca4032253ff56a4e22738 [--rows ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = ("tutorial_as_written", "tutorial", "default", "reader", "lean", "best", "tfidf_logreg")
SERVED_REVIEWS, SINGLE_CALLS = 2000, 200
# The behaviour columns: one test each, the mean of the templated tests a system must pass, and
# the single sentences cut from test reviews (short reviews).
NEGATION = "negated positive → negative"
SHORT = (
    "first sentence of a test review → its label",
    "last sentence of a test review → its label",
)


def load_reviews(archive: Path, sha256: str) -> pd.DataFrame:
    from rnn_sentiment.params import Source
    from rnn_sentiment.stages import download

    return download.read_reviews(
        download.fetch((Source(url=str(archive), sha256=sha256),), archive.parent)
    )


def tutorial_as_written(reviews: pd.DataFrame) -> dict:
    """The tutorial's code, bugs and all: whitespace tokens, post-padding read at the last column,
    `CrossEntropyLoss` on a single logit (always 0: nothing learns), logits thresholded at 0.5."""
    from collections import Counter

    torch.manual_seed(0)
    train, test = reviews[reviews.split == "train"], reviews[reviews.split == "test"]
    counts = Counter(word for text in train.text for word in text.split())
    vocab = {word: i + 1 for i, (word, _) in enumerate(counts.most_common(10_000))}

    def encode(texts: pd.Series) -> torch.Tensor:
        ids = np.zeros((len(texts), 150), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [vocab.get(word, 0) for word in text.split()][:150]
            ids[row, : len(tokens)] = tokens
        return torch.from_numpy(ids)

    x_train, y_train = encode(train.text), torch.tensor(train.label.to_numpy(), dtype=torch.long)
    x_test, y_test = encode(test.text), test.label.to_numpy()
    embedding, rnn, linear = (
        torch.nn.Embedding(10_001, 100),
        torch.nn.RNN(100, 256, batch_first=True),
        torch.nn.Linear(256, 1),
    )
    modules = torch.nn.ModuleList([embedding, rnn, linear])
    optimizer, loss_fn = torch.optim.Adam(modules.parameters()), torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    order = torch.randperm(len(x_train))
    for i in range(0, len(order), 32):
        index = order[i : i + 32]
        optimizer.zero_grad()
        logits = linear(rnn(embedding(x_train[index]))[0][:, -1])  # [B, 1]
        loss_fn(logits, y_train[index] * 0).backward()  # one class: targets must be 0, loss is 0
        optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = torch.cat(
            [
                linear(rnn(embedding(x_test[i : i + 256]))[0][:, -1])
                for i in range(0, len(x_test), 256)
            ]
        )
    accuracy = float(((logits.squeeze(1) > 0.5).numpy() == y_test).mean())
    return {"accuracy": accuracy, "train_seconds": seconds, "epochs": 1}


def preset(reviews: pd.DataFrame, name: str, started: float) -> dict[str, dict]:
    """Train one preset through the pipeline's own stage functions, score it on test, and measure
    how it serves and behaves: a row, and for `best` a second one served in int8."""
    import pyarrow as pa

    from rnn_sentiment import params as params_lib
    from rnn_sentiment import presets
    from rnn_sentiment.serving import Predictor
    from rnn_sentiment.stages import evaluate, pad, tokenize, train
    from rnn_sentiment.training import choose_device

    params = presets.apply(params_lib.load(), name)
    tokenizer, tables = tokenize.run(
        params.tokenize, pa.Table.from_pandas(reviews, preserve_index=False)
    )
    padded = pad.run(params.pad, tables)
    device = choose_device()
    result = train.run(params.train, params.base.seed, padded["train"], tokenizer, device)
    metrics, _ = evaluate.run(params.evaluate, result.model, padded["test"], device)
    trained = {
        **pipeline_cost(started),
        "accuracy": metrics["accuracy"],
        "val_accuracy": result.metrics["best_val_accuracy"],
        "epochs": len(result.history),
        "train_seconds": result.metrics["train_seconds"],
    }
    rows = {name: {**trained, **served(Predictor(result.model, tokenizer, params.pad), reviews)}}
    if name == "best":
        int8 = Predictor(result.model, tokenizer, params.pad, precision="int8")
        test = reviews[reviews.split == "test"]
        accuracy = float(((int8.predict_proba(test.text.tolist()) >= 0.5) == test.label).mean())
        rows[f"{name}, served in int8"] = {**trained, **served(int8, reviews), "accuracy": accuracy}
    return rows


def tfidf_logreg(reviews: pd.DataFrame, started: float) -> dict[str, dict]:
    """The linear baseline (benchmarks/tfidf.py)."""
    from benchmarks.tfidf import TfidfLogreg

    train, test = reviews[reviews.split == "train"], reviews[reviews.split == "test"]
    start = time.perf_counter()
    model = TfidfLogreg(train.text, train.label)
    seconds = time.perf_counter() - start
    # Above 0.5, as LogisticRegression.predict decides (a positive decision function).
    accuracy = float(((model.predict_proba(test.text) > 0.5) == test.label).mean())
    row = {**pipeline_cost(started), "accuracy": accuracy, "epochs": 1, "train_seconds": seconds}
    return {"tfidf_logreg": {**row, **served(model, reviews)}}


def served(scorer, reviews: pd.DataFrame) -> dict:
    """Serving speed and behavioural failure rates of anything with `predict_proba(texts)`."""
    from benchmarks import behaviour
    from benchmarks.serving_latency import measure as time_serving

    test = reviews[reviews.split == "test"]
    sample = test.text.sample(min(SERVED_REVIEWS, len(test)), random_state=0).tolist()
    throughput, p50, _ = time_serving(
        scorer.predict_proba, lambda review: scorer.predict_proba([review]), sample, SINGLE_CALLS
    )
    templated = behaviour.template_tests()
    rates = behaviour.failure_rates(
        templated + behaviour.sentence_tests(reviews, SERVED_REVIEWS), scorer
    )
    must_pass = [test.name for test in templated if "contested" not in test.name]
    return {
        "reviews_per_s": throughput,
        "p50_ms": p50,
        "negation": rates[NEGATION],
        "templates": float(np.mean([rates[name] for name in must_pass])),
        "short": float(np.mean([rates[name] for name in SHORT])),
    }


def pipeline_cost(started: float) -> dict:
    """Wall time since `started` and this process's peak resident memory so far: what the row's
    pipeline cost, from reading the archive to scoring the test split, before serving is timed."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": time.perf_counter() - started, "peak_mb": peak_mb}


def measure(row: str, archive: Path, sha256: str) -> dict[str, dict]:
    """Run one row in this (fresh) process, from reading the archive on."""
    torch.set_num_threads(torch.get_num_threads())
    started = time.perf_counter()
    reviews = load_reviews(archive, sha256)
    if row == "tutorial_as_written":
        return {row: {**tutorial_as_written(reviews), **pipeline_cost(started)}}
    if row == "tfidf_logreg":
        return tfidf_logreg(reviews, started)
    return preset(reviews, row, started)


HEADER = (
    "| system | test accuracy | best val accuracy | epochs | train wall | pipeline wall "
    "| peak memory | serving reviews/s | single review p50 | negation fails | templated tests "
    "fail (mean) | short reviews fail |"
)


def format_row(row: str, result: dict) -> str:
    def share(key: str, digits: int = 1) -> str:
        return f"{result[key]:.{digits}%}" if key in result else "-"

    cells = [
        row,
        share("accuracy", 2),
        share("val_accuracy", 2),
        str(result["epochs"]),
        f"{result['train_seconds']:.0f} s",
        f"{result['wall'] / 60:.1f} min",
        f"{result['peak_mb'] / 1024:.1f} GB",
        f"{result['reviews_per_s']:,.0f}" if "reviews_per_s" in result else "-",
        f"{result['p50_ms']:.1f} ms" if "p50_ms" in result else "-",
        share("negation"),
        share("templates"),
        share("short"),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    args = parser.parse_args()
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"machine: {platform.machine()}, {device}, torch {torch.__version__}")
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    context = multiprocessing.get_context("spawn")
    for row in args.rows:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            results = pool.submit(measure, row, args.archive, args.sha256).result()
        for name, result in results.items():
            lines.append(format_row(name, result))
            print(lines[-1], flush=True)
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
