"""tokenize stage: fit a word-level vocabulary on the train split and encode every review.

Only the train split shapes the vocabulary, so nothing about the test set leaks into the model.
Outputs the tokenizer (`tokenizer.json`, reused verbatim at serving time) and one table of token
ids per split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from rnn_sentiment import params as params_lib
from rnn_sentiment import text
from rnn_sentiment.errors import UserError
from rnn_sentiment.files import atomic_path, read_parquet, write_parquet
from rnn_sentiment.lifecycle import stage_main
from rnn_sentiment.params import TokenizeParams

SPLITS = ("train", "test")
REVIEW_COLUMNS = ("split", "label", "text")  # needed; `review_id` and `movie` carried where present


def run(params: TokenizeParams, reviews: pa.Table) -> tuple[Tokenizer, dict[str, pa.Table]]:
    """Fit the tokenizer on train reviews (a table with REVIEW_COLUMNS); return it and a
    review_id/label/movie/ids table per split (`review_id` and `movie` only where the reviews
    table has them)."""
    kept = [c for c in ("review_id", "label", "movie") if c in reviews.column_names]
    frame = reviews.select(["split", "text", *kept]).to_pandas()
    missing = [split for split in SPLITS if not (frame["split"] == split).any()]
    if missing:
        raise UserError(f"the reviews table has no {' or '.join(missing)} rows: check the archive")
    train_texts = frame.loc[frame["split"] == "train", "text"].tolist()
    tokenizer = text.fit(train_texts, params)
    tables = {}
    for split in SPLITS:
        rows = frame[frame["split"] == split]
        tables[split] = pa.table(
            {column: pa.array(rows[column]) for column in kept}
            | {"ids": _list_array(text.encode(tokenizer, rows["text"].tolist()))}
        )
    return tokenizer, tables


def _list_array(ids: list[list[int]]) -> pa.ListArray:
    """Pack ragged token ids into an Arrow list<int32> column without per-row Python objects."""
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int32, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((i for row in ids for i in row), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument("--reviews", type=Path, required=True, help="the download stage's table")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    params = params_lib.load(args.params).tokenize
    tokenizer, tables = run(params, read_parquet(args.reviews, REVIEW_COLUMNS))
    with atomic_path(args.output_dir / "tokenizer.json") as tmp:
        tokenizer.save(str(tmp))
    for split, table in tables.items():
        write_parquet(table, args.output_dir / f"{split}.parquet")
    sizes = {split: table.num_rows for split, table in tables.items()}
    print(f"tokenize: vocabulary {tokenizer.get_vocab_size()} ids, {sizes} -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
