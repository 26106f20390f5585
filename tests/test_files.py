from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rnn_sentiment.errors import UserError
from rnn_sentiment.files import read_npz, read_parquet, write_npz, write_parquet


@pytest.mark.parametrize("keep", [0.3, 0.9], ids=["header only", "last bytes lost"])
def test_a_truncated_npz_is_named_with_the_fix(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "train.npz"
    write_npz(path, ids=np.arange(4000, dtype=np.int32).reshape(40, 100))
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(UserError, match=r"train.npz is truncated or corrupt \(.*\): rebuild it"):
        read_npz(path)


def test_a_parquet_without_a_needed_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "reviews.parquet"
    write_parquet(pa.table({"split": ["train"], "label": [1]}), path)
    assert read_parquet(path, ("split",)).num_rows == 1
    with pytest.raises(UserError) as missing:
        read_parquet(path, ("split", "text", "label", "rating"))
    assert str(missing.value) == (
        f"{path} has no `text`, `rating` column (its columns: split, label): "
        "rebuild it with `dvc repro`"
    )


def test_a_damaged_parquet_is_named_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "reviews.parquet"
    write_parquet(pa.table({"text": ["a review"] * 100}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError, match=r"is not a readable Parquet file \(.*\): rebuild it"):
        read_parquet(path)
