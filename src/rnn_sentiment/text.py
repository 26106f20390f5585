"""The tokenizer: one HuggingFace `tokenizers` pipeline shared by training and serving.

Normalisation (Unicode NFKC, HTML tags such as `<br />` removed, lowercase) and pre-tokenisation
(punctuation split from words by `pre_tokenizers.Whitespace`, twice as fast here as a custom
regex) are saved inside `tokenizer.json`, so serving encodes raw text exactly as training did.
Ids 0 and 1 are reserved for padding and unknown words; they are not registered as special
tokens, so a review that contains the literal text `<pad>` cannot produce id 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from rnn_sentiment.errors import UserError, reason
from rnn_sentiment.files import require_file
from rnn_sentiment.params import TokenizeParams

PAD_ID = 0
UNK_ID = 1
# The leading space keeps the reserved names out of reach of text: both pre-tokenizers split on
# whitespace, so no review can produce a token equal to either.
PAD_TOKEN = " <pad>"
UNK_TOKEN = " <unk>"
HTML_TAG = r"<\s*/?\s*[a-zA-Z][^>]*>"


def _empty_tokenizer(params: TokenizeParams, vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    steps: list[normalizers.Normalizer] = [normalizers.NFKC()]
    if params.strip_html:
        steps.append(normalizers.Replace(Regex(HTML_TAG), " "))
    if params.lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Whitespace()
        if params.split_punctuation
        else pre_tokenizers.WhitespaceSplit()
    )
    return tokenizer


def fit(texts: Sequence[str], params: TokenizeParams) -> Tokenizer:
    """Fit a word-level vocabulary of the `max_features` most frequent tokens of `texts`.

    Ties in frequency are broken by the token's text (the trainer sorts by count, then by token),
    so the same texts always give the same ids.
    """
    counter = _empty_tokenizer(params, {UNK_TOKEN: 0})
    trainer = WordLevelTrainer(vocab_size=params.max_features, min_frequency=1, show_progress=False)
    counter.train_from_iterator(texts, trainer, length=len(texts))
    learned = sorted(counter.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
    vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
    for token, _ in learned:
        vocab.setdefault(token, len(vocab))
    return _empty_tokenizer(params, vocab)


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (encoded in parallel in Rust, without offsets)."""
    return [enc.ids for enc in tokenizer.encode_batch_fast(list(texts))]


def load(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer saved by the tokenize stage."""
    require_file(path)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # `tokenizers` raises a bare Exception for any file it cannot parse
        raise UserError(
            f"{path} is not a tokenizer the tokenize stage wrote ({reason(err)}): run `dvc repro` "
            "to rebuild it"
        ) from None


def check_vocab_size(
    tokenizer: Tokenizer,
    vocab_size: int,
    tokenizer_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
) -> None:
    """Refuse a tokenizer whose ids do not match the model's embedding rows: a larger one would
    fail on the first rare word (index out of range), a smaller one would score silently wrong."""
    if tokenizer.get_vocab_size() != vocab_size:
        raise UserError(
            f"tokenizer {tokenizer_path} has {tokenizer.get_vocab_size()} ids but model "
            f"{model_path} was trained on {vocab_size}: use the tokenizer.json saved beside the "
            "model, or retrain both with `dvc repro`"
        )


def check_ids(
    ids: np.ndarray,
    vocab_size: int,
    ids_path: str | os.PathLike[str],
    tokenizer_path: str | os.PathLike[str],
) -> None:
    """Refuse token ids outside the tokenizer's vocabulary: they come from another tokenizer, and
    would fail deep inside the model's embedding (index out of range) rather than here."""
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise UserError(
            f"{ids_path} holds token ids up to {ids.max()} but tokenizer {tokenizer_path} has "
            f"{vocab_size}: they come from different tokenize runs; run `dvc repro` to rebuild both"
        )
