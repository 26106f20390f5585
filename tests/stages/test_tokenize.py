from __future__ import annotations

import pyarrow as pa
import pytest

from rnn_sentiment import text
from rnn_sentiment.errors import UserError
from rnn_sentiment.files import write_parquet
from rnn_sentiment.params import TokenizeParams
from rnn_sentiment.stages import tokenize


def reviews(rows: list[tuple[str, int, str]]) -> pa.Table:
    split, label, texts = zip(*rows, strict=True)
    return pa.table(
        {
            "split": list(split),
            "review_id": list(range(len(rows))),
            "label": list(label),
            "text": list(texts),
        }
    )


def vocab_words(tokenizer) -> list[str]:
    return [word for word, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]


def test_vocabulary_comes_from_train_only_with_reserved_ids() -> None:
    table = reviews(
        [("train", 1, "good good film"), ("train", 0, "bad film"), ("test", 1, "unseen good")]
    )
    tokenizer, tables = tokenize.run(TokenizeParams(max_features=10), table)

    assert vocab_words(tokenizer) == [text.PAD_TOKEN, text.UNK_TOKEN, "film", "good", "bad"]
    assert tables["test"].column("ids").to_pylist() == [[text.UNK_ID, 3]]
    assert tables["train"].column("label").to_pylist() == [1, 0]


def test_most_frequent_tokens_kept_and_ties_broken_by_text() -> None:
    table = reviews([("train", 1, "zeta alpha mid mid mid beta"), ("test", 0, "x")])
    tokenizer, _ = tokenize.run(TokenizeParams(max_features=3), table)
    assert vocab_words(tokenizer)[2:] == ["mid", "alpha", "beta"]


def test_normalisation_strips_html_lowercases_and_splits_punctuation() -> None:
    tokenizer = text.fit(["Great film!<br /><br />Loved it"], TokenizeParams())
    assert tokenizer.encode("GREAT film!<br />loved IT").tokens == [
        "great",
        "film",
        "!",
        "loved",
        "it",
    ]


def test_normalisation_can_be_turned_off() -> None:
    params = TokenizeParams(lowercase=False, strip_html=False, split_punctuation=False)
    tokenizer = text.fit(["Great film!<br /><br />Loved"], params)
    assert "film!<br" in tokenizer.get_vocab()
    assert "Great" in tokenizer.get_vocab()


def test_literal_reserved_token_text_never_becomes_padding() -> None:
    tokenizer = text.fit(["a b"], TokenizeParams(strip_html=False, split_punctuation=False))
    for literal in ("<pad>", text.PAD_TOKEN, text.UNK_TOKEN):
        assert tokenizer.encode(f"{literal} a").ids == [text.UNK_ID, 2]


def test_empty_review_encodes_to_no_tokens() -> None:
    table = reviews([("train", 1, "good"), ("test", 0, "")])
    _, tables = tokenize.run(TokenizeParams(), table)
    assert tables["test"].column("ids").to_pylist() == [[]]


def test_missing_split_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="no test rows"):
        tokenize.run(TokenizeParams(), reviews([("train", 1, "good")]))


def test_a_reviews_table_without_a_needed_column_names_it(tmp_path, capsys) -> None:
    path = tmp_path / "reviews.parquet"
    write_parquet(reviews([("train", 1, "good"), ("test", 0, "bad")]).drop(["text"]), path)
    (tmp_path / "params.yaml").write_text("tokenize:\n  max_features: 10\n", encoding="utf-8")
    argv = ["--params", str(tmp_path / "params.yaml"), "--reviews", str(path)]
    code = tokenize.main([*argv, "--output-dir", str(tmp_path / "tokens")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: {path} has no `text` column (its columns: split, review_id, label): "
        "rebuild it with `dvc repro`\n"
    )
    assert not (tmp_path / "tokens").exists()
