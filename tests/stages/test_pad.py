from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from rnn_sentiment.files import write_parquet
from rnn_sentiment.params import PadParams
from rnn_sentiment.stages import pad

ROWS = [[5, 6, 7, 8, 9], [5, 6], []]


def padded(maxlen: int, padding: str, truncating: str) -> tuple[list[list[int]], list[int]]:
    table = pa.table({"label": [1, 0, 1], "ids": pa.array(ROWS, type=pa.list_(pa.int32()))})
    params = PadParams(maxlen=maxlen, padding=padding, truncating=truncating)
    arrays = pad.run(params, {"train": table})["train"]
    assert arrays["ids"].dtype == np.int32 and arrays["ids"].shape == (3, maxlen)
    assert arrays["labels"].tolist() == [1, 0, 1]
    return arrays["ids"].tolist(), arrays["lengths"].tolist()


@pytest.mark.parametrize(
    ("padding", "truncating", "expected"),
    [
        ("post", "pre", [[7, 8, 9], [5, 6, 0], [0, 0, 0]]),
        ("post", "post", [[5, 6, 7], [5, 6, 0], [0, 0, 0]]),
        ("pre", "pre", [[7, 8, 9], [0, 5, 6], [0, 0, 0]]),
        ("pre", "post", [[5, 6, 7], [0, 5, 6], [0, 0, 0]]),
    ],
)
def test_padding_and_truncating_sides(
    padding: str, truncating: str, expected: list[list[int]]
) -> None:
    ids, lengths = padded(3, padding, truncating)
    assert ids == expected
    assert lengths == [3, 2, 0]


def test_rows_shorter_than_maxlen_are_kept_whole() -> None:
    ids, lengths = padded(6, "post", "pre")
    assert ids[0] == [5, 6, 7, 8, 9, 0]
    assert lengths == [5, 2, 0]


def test_groups_number_movies_and_give_each_unknown_one_its_own() -> None:
    movies = pa.array(["tt2", "tt1", None, "tt2", None], type=pa.string())
    ids = pa.array([[5]] * 5, type=pa.list_(pa.int32()))
    table = pa.table({"label": [1, 0, 1, 1, 0], "movie": movies, "ids": ids})
    groups = pad.run(PadParams(maxlen=2), {"train": table})["train"]["groups"]
    assert groups[0] == groups[3] and len(set(groups.tolist())) == 4
    without_movies = pad.run(PadParams(maxlen=2), {"train": table.drop(["movie"])})["train"]
    assert without_movies["groups"].tolist() == [0, 1, 2, 3, 4]


def test_writes_deterministic_npz(tmp_path) -> None:
    from rnn_sentiment.files import read_npz, write_npz

    arrays = {
        "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
        "lengths": np.array([3, 1], np.int32),
    }
    write_npz(tmp_path / "a.npz", **arrays)
    write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert read_npz(tmp_path / "a.npz")["ids"].tolist() == arrays["ids"].tolist()


def test_missing_tokens_say_how_to_produce_them(tmp_path, capsys) -> None:
    (tmp_path / "params.yaml").write_text("pad:\n  maxlen: 4\n", encoding="utf-8")
    code = pad.main(
        [
            "--params",
            str(tmp_path / "params.yaml"),
            "--tokens-dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "missing input file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_token_table_without_labels_names_the_column(tmp_path, capsys) -> None:
    from rnn_sentiment.files import write_parquet

    (tmp_path / "params.yaml").write_text("pad:\n  maxlen: 4\n", encoding="utf-8")
    ids = pa.array(ROWS, type=pa.list_(pa.int32()))
    write_parquet(pa.table({"label": [1, 0, 1], "ids": ids}), tmp_path / "train.parquet")
    write_parquet(pa.table({"ids": ids}), tmp_path / "test.parquet")
    argv = ["--params", str(tmp_path / "params.yaml"), "--tokens-dir", str(tmp_path)]
    assert pad.main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'test.parquet'} has no `label` column (its columns: ids): "
        "rebuild it with `dvc repro`\n"
    )


def test_padded_bytes_bound_what_padding_allocates() -> None:
    rng = np.random.default_rng(0)
    tables = {}
    for split, rows in (("train", 300), ("test", 200)):
        lengths = rng.integers(0, 400, rows)
        ids = [rng.integers(2, 100, n).astype(np.int32) for n in lengths]
        tables[split] = pa.table(
            {"label": np.zeros(rows, np.int8), "ids": pa.array(ids, type=pa.list_(pa.int32()))}
        )
    for maxlen in (50, 200, 800):
        tracemalloc.start()
        pad.run(PadParams(maxlen=maxlen), tables)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        estimate = pad.padded_bytes([300, 200], maxlen)
        assert peak <= estimate <= 1.5 * peak


def test_a_maxlen_over_the_memory_budget_is_refused_before_padding(tmp_path, capsys) -> None:
    table = pa.table({"label": [1, 0], "ids": pa.array([[5, 6], [7]], type=pa.list_(pa.int32()))})
    for split in pad.SPLITS:
        write_parquet(table, tmp_path / f"{split}.parquet")
    (tmp_path / "params.yaml").write_text("pad:\n  maxlen: 1000000000\n", encoding="utf-8")
    args = ["--params", str(tmp_path / "params.yaml"), "--tokens-dir", str(tmp_path)]
    code = pad.main([*args, "--output-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    needed = pad.padded_bytes([2, 2], 10**9) / 1e9
    assert (
        f"pad would need about {needed:,.1f} GB, over base.memory_budget_gb: 8 (default 8)" in err
    )
    assert "set by pad.maxlen: 1000000000" in err
    assert not (tmp_path / "out").exists()
