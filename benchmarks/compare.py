"""Accuracy and speed of the tutorial, the presets and a linear baseline, measured in one run.

Every row trains from scratch on the same archive's train split and is scored once on its test
split; each runs in its own process so that its peak memory is its own. Prints one table.

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

ROWS = ("tutorial_as_written", "tutorial", "default", "best", "tfidf_logreg")


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
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "reviews": len(x_train),
        "tokens": len(x_train) * 150,
        "epochs": 1,
    }


def preset(reviews: pd.DataFrame, name: str) -> dict:
    """Train one preset through the pipeline's own stage functions and score it on test."""
    import pyarrow as pa

    from rnn_sentiment import params as params_lib
    from rnn_sentiment import presets
    from rnn_sentiment.stages import evaluate, pad, tokenize, train
    from rnn_sentiment.training import choose_device

    params = presets.apply(params_lib.load(), name)
    tokenizer, tables = tokenize.run(
        params.tokenize, pa.Table.from_pandas(reviews, preserve_index=False)
    )
    padded = pad.run(params.pad, tables)
    device = choose_device()
    result = train.run(
        params.train, params.base.seed, padded["train"], tokenizer.get_vocab_size(), device
    )
    metrics, _ = evaluate.run(params.evaluate, result.model, padded["test"], device)
    rows_trained = len(padded["train"]["labels"]) * (1 - params.train.val_fraction)
    mean_length = padded["train"]["lengths"].mean()
    epochs = len(result.history)
    return {
        "accuracy": metrics["accuracy"],
        "seconds": result.metrics["train_seconds"],
        "reviews": rows_trained * epochs,
        "tokens": rows_trained * mean_length * epochs,
        "epochs": epochs,
        "val_accuracy": result.metrics["best_val_accuracy"],
    }


def tfidf_logreg(reviews: pd.DataFrame) -> dict:
    """The linear baseline (benchmarks/tfidf.py), its import kept out of the fit's time."""
    from benchmarks.tfidf import TfidfLogreg

    train, test = reviews[reviews.split == "train"], reviews[reviews.split == "test"]
    start = time.perf_counter()
    model = TfidfLogreg(train.text, train.label)
    seconds = time.perf_counter() - start
    # Above 0.5, as LogisticRegression.predict decides (a positive decision function).
    accuracy = float(((model.predict_proba(test.text) > 0.5) == test.label).mean())
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "reviews": len(train),
        "tokens": None,  # no tokenizer of ours: not comparable
        "epochs": 1,
    }


def measure(row: str, archive: Path, sha256: str) -> dict:
    """Run one row in this (fresh) process; add its peak resident memory."""
    torch.set_num_threads(torch.get_num_threads())
    reviews = load_reviews(archive, sha256)
    if row == "tutorial_as_written":
        result = tutorial_as_written(reviews)
    elif row == "tfidf_logreg":
        result = tfidf_logreg(reviews)
    else:
        result = preset(reviews, row)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def format_row(row: str, result: dict) -> str:
    seconds = result["seconds"]
    cells = [
        row,
        f"{result['accuracy']:.1%}",
        f"{result['val_accuracy']:.1%}" if "val_accuracy" in result else "-",
        str(result["epochs"]),
        f"{seconds:.0f} s",
        f"{result['reviews'] / seconds:,.0f}",
        f"{result['tokens'] / seconds:,.0f}" if result["tokens"] is not None else "-",
        f"{result['peak_mb']:,.0f} MB",
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
    lines = [
        "| system | test accuracy | best val accuracy | epochs | train wall | reviews/s | tokens/s "
        "| peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    context = multiprocessing.get_context("spawn")
    for row in args.rows:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(measure, row, args.archive, args.sha256).result()
        lines.append(format_row(row, result))
        print(lines[-1], flush=True)
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
