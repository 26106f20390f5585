"""`text.encode_kept`: the tokens padding keeps, from no more text than they need, and exactly
those of the whole text."""

from __future__ import annotations

import random
import sys
import unicodedata

import pytest
import torch

from rnn_sentiment import text
from rnn_sentiment.models import ModelConfig, SentimentRNN
from rnn_sentiment.params import PadParams, TokenizeParams
from rnn_sentiment.serving import Predictor
from tests.conftest import synthetic_review

SETTINGS = {
    "default": TokenizeParams(max_features=40),
    "raw": TokenizeParams(max_features=40, lowercase=False, strip_html=False),
    "whitespace split": TokenizeParams(max_features=40, split_punctuation=False),
}
# Pieces of text that make tokenizing a cut window differ from the whole if cut carelessly: tags
# with spaces inside, `<` and `>` that NFKC makes (＞, ﹤) or unmakes (> + U+0338 is ≯), combining
# marks after a space, a final sigma, punctuation runs, all kinds of whitespace.
PIECES = [
    "great", "Dull", "film", "é", "e\u0301", " \u0301x", "ΣΑΣ", "...", "!", "don't",
    " ", " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u2003", "\x1c",
    "<br />", "<br /><br />", "< b>", "</i >", '<a href="x y">', "<", ">", "a>b", "<3", "x < y",
    "＞", "﹤", "≯", ">\u0338", "<\u0338", "＜p ＞", "<p\n class=z>",
]  # fmt: skip


def long_review(index: int) -> str:
    """Several synthetic reviews run together, with their `<br />`s: a review of some length."""
    return " ".join(synthetic_review(index % 2, index + k) for k in range(3 + index % 40))


def fitted(settings: str):
    return text.fit([long_review(i) for i in range(30)] + PIECES, SETTINGS[settings])


def cut(ids: list[int], keep: int, truncating: str) -> list[int]:
    return ids[-keep:] if truncating == "pre" else ids[:keep]


@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("keep", [1, 4, 25, 150])
def test_reviews_get_the_kept_tokens_of_the_whole_text(keep: int, truncating: str) -> None:
    tokenizer = fitted("default")
    reviews = [long_review(i) for i in range(40)] + ["", "   ", "<br />", "one"]
    whole = text.encode(tokenizer, reviews)
    expected = [cut(ids, keep, truncating) for ids in whole]
    assert text.encode_kept(tokenizer, reviews, keep, truncating) == expected
    windowed = [r for r in reviews if len(r) > text.WINDOW_CHARS_PER_TOKEN * keep]
    assert len(windowed) >= 10


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_any_text_gets_the_kept_tokens_of_the_whole_text(settings: str, truncating: str) -> None:
    tokenizer = fitted(settings)
    rng = random.Random(f"{settings}/{truncating}")
    texts = ["".join(rng.choices(PIECES, k=rng.randint(1, 400))) for _ in range(400)]
    whole = text.encode(tokenizer, texts)
    for keep in (1, 2, 5, 13):
        kept = text.encode_kept(tokenizer, texts, keep, truncating)
        mismatches = [
            t for t, k, w in zip(texts, kept, whole, strict=True) if k != cut(w, keep, truncating)
        ]
        assert mismatches == [], f"keep={keep}: {mismatches[0]!r}"


class Spy:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.longest = tokenizer, 0

    def encode_batch_fast(self, texts: list[str]):
        self.longest = max(self.longest, *map(len, texts))
        return self.tokenizer.encode_batch_fast(texts)


@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_a_20mb_review_is_scored_from_a_few_kilobytes(truncating: str) -> None:
    tokenizer = fitted("default")
    filler = "the plot was dull and the music superb " * 520_000  # 20 MB
    end = " ".join(synthetic_review(1, i) for i in range(40))
    review = filler + end if truncating == "pre" else end + " " + filler
    pad = PadParams(maxlen=150, truncating=truncating)
    expected = cut(text.encode(tokenizer, [end])[0], pad.maxlen, truncating)
    assert len(expected) == pad.maxlen
    spy = Spy(tokenizer)

    assert text.encode_kept(spy, [review], pad.maxlen, truncating) == [expected]
    assert spy.longest <= text.WINDOW_CHARS_PER_TOKEN * pad.maxlen

    torch.manual_seed(0)
    model = SentimentRNN(ModelConfig(vocab_size=tokenizer.get_vocab_size(), embedding_dim=4))
    predictor = Predictor(model, spy, pad, precision="float32")
    probabilities = predictor.predict_proba([review, end])
    assert probabilities[0] == pytest.approx(probabilities[1], abs=1e-6)
    assert spy.longest <= text.WINDOW_CHARS_PER_TOKEN * pad.maxlen


def test_text_without_whitespace_is_tokenized_from_a_bounded_window() -> None:
    spy = Spy(fitted("default"))
    kept = text.encode_kept(spy, ["x" * 3 * text.MAX_WINDOW_CHARS], 5, "pre")
    assert kept == [[text.UNK_ID]]
    assert spy.longest == text.MAX_WINDOW_CHARS


@pytest.mark.parametrize(("constant", "char"), [(text.TAG_OPENERS, "<"), (text.TAG_CLOSERS, ">")])
def test_tag_characters_are_all_that_decompose_to_hold_one(constant: str, char: str) -> None:
    every = map(chr, range(sys.maxunicode + 1))
    assert set(constant) == {c for c in every if char in unicodedata.normalize("NFKD", c)}


def test_tag_ends_are_the_closers_that_stay_a_tag_end() -> None:
    ends = {char for char in text.TAG_CLOSERS if unicodedata.normalize("NFKC", char + "a") == ">a"}
    assert set(text.TAG_ENDS) == ends


def test_negators_and_clause_ends_are_found_in_the_vocabulary() -> None:
    tokenizer = text.fit(["It wasn't bad, but it was not good. No!"], TokenizeParams())
    roles = text.word_roles(tokenizer)
    by_role: dict[int, set[str]] = {}
    for token, index in tokenizer.get_vocab().items():
        by_role.setdefault(int(roles[index]), set()).add(token)
    assert by_role[text.NEGATOR] == {"not", "no", "t"}  # "t" ends "wasn't"
    assert by_role[text.ENDS_CLAUSE] == {",", ".", "!", "but"}
    assert {"wasn", "'", "bad", "good", text.PAD_TOKEN} <= by_role[text.PLAIN]
