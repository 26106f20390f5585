"""pad stage: cut or pad every review's token ids to `maxlen`, keeping each row's true length.

The true lengths travel with the ids so the model can ignore padding exactly, whichever side it
is on; an empty review becomes a row of padding with length 0 rather than an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from rnn_sentiment import params as params_lib
from rnn_sentiment.errors import exit_on_user_error
from rnn_sentiment.files import read_parquet, write_npz
from rnn_sentiment.padding import pad_sequences
from rnn_sentiment.params import PadParams

SPLITS = ("train", "test")


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


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument("--tokens-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    params = params_lib.load(args.params).pad
    tokens = {split: read_parquet(args.tokens_dir / f"{split}.parquet") for split in SPLITS}
    for split, arrays in run(params, tokens).items():
        write_npz(args.output_dir / f"{split}.npz", **arrays)
        print(f"pad: {split} ids {list(arrays['ids'].shape)} -> {args.output_dir / split}.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
