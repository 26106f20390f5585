"""pad stage: cut or pad every review's token ids to `maxlen`, keeping each row's true length.

The true lengths travel with the ids so the model can ignore padding exactly, whichever side it
is on; an empty review becomes a row of padding with length 0 rather than an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from rnn_sentiment import budget
from rnn_sentiment import params as params_lib
from rnn_sentiment.files import read_parquet, write_npz
from rnn_sentiment.lifecycle import stage_main
from rnn_sentiment.padding import pad_sequences
from rnn_sentiment.params import PadParams

SPLITS = ("train", "test")
TOKEN_COLUMNS = ("label", "ids")  # needed in each token table; `movie` is used where present
# Bytes per cell of `[N, maxlen]` that `pad_sequences` holds besides the ids while it runs: column
# positions and source indices in int64, and the mask (at most 25 measured with tracemalloc).
PADDING_TEMPORARIES = 26


def padded_bytes(rows: Sequence[int], maxlen: int) -> int:
    """Peak bytes of `run` for splits of `rows` reviews: the int32 ids of every split, and the
    temporaries of the largest one while it is padded."""
    cells = [count * maxlen for count in rows]
    return 4 * sum(cells) + PADDING_TEMPORARIES * max(cells, default=0)


def run(params: PadParams, tokens: dict[str, pa.Table]) -> dict[str, dict[str, np.ndarray]]:
    """Return `{split: {"ids", "lengths", "labels", "groups"}}` arrays for each split's token
    table; `groups` numbers the movies, so a validation split can keep each movie on one side."""
    padded = {}
    for split, table in tokens.items():
        column = table.column("ids").combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False)
        offsets = column.offsets.to_numpy()
        ids, lengths = pad_sequences(values, offsets, params)
        labels = table.column("label").to_numpy().astype(np.int8)
        padded[split] = {"ids": ids, "lengths": lengths, "labels": labels, "groups": groups(table)}
    return padded


def groups(table: pa.Table) -> np.ndarray:
    """A movie number per row; a row of unknown movie (or a table without movies) is its own."""
    rows = np.arange(table.num_rows, dtype=np.int32)
    if "movie" not in table.column_names:
        return rows
    movies = table.column("movie").to_pandas()
    codes = pd.factorize(movies)[0].astype(np.int32)  # -1 where the movie is unknown
    unknown = codes < 0
    codes[unknown] = codes.max(initial=-1) + 1 + rows[: unknown.sum()]
    return codes


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument("--tokens-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    all_params = params_lib.load(args.params)
    params = all_params.pad
    tokens = {
        split: read_parquet(args.tokens_dir / f"{split}.parquet", TOKEN_COLUMNS) for split in SPLITS
    }
    needed = padded_bytes([table.num_rows for table in tokens.values()], params.maxlen)
    padded = budget.Cost("the padded ids", needed, (f"pad.maxlen: {params.maxlen}",))
    budget.check("pad", [padded], all_params.base.memory_budget_gb)
    for split, arrays in run(params, tokens).items():
        write_npz(args.output_dir / f"{split}.npz", **arrays)
        print(f"pad: {split} ids {list(arrays['ids'].shape)} -> {args.output_dir / split}.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
