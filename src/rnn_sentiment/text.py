"""The tokenizer: one HuggingFace `tokenizers` pipeline shared by training and serving.

Normalisation (Unicode NFKC, HTML tags such as `<br />` removed, lowercase) and pre-tokenisation
(punctuation split from words by `pre_tokenizers.Whitespace`, twice as fast here as a custom
regex) are saved inside `tokenizer.json`, so serving encodes raw text exactly as training did.
Ids 0 and 1 are reserved for padding and unknown words; they are not registered as special
tokens, so a review that contains the literal text `<pad>` cannot produce id 0. Serving encodes
only the end of a long review that padding keeps (`encode_kept`), with the same tokens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Literal

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

# Where a long text may be cut without changing the tokens on the kept side (`encode_kept`): at
# whitespace that every tokenizer step treats as such, where no HTML tag can be open. Unicode
# normalisation (NFKC) makes `<` and `>` of the characters in TAG_OPENERS and TAG_CLOSERS (those
# whose decomposition holds them; tests/test_text.py derives both from `unicodedata`), and those
# of TAG_ENDS always end as a `>` when an ASCII character follows (`≯` does not).
CUT_SPACES = "\t\n\v\f\r "
TAG_OPENERS = "<\u226e\ufe64\uff1c"
TAG_CLOSERS = ">\u226f\ufe65\uff1e"
TAG_ENDS = ">\ufe65\uff1e"
_CUT_EVENTS = re.compile(f"[{TAG_OPENERS}]|[{TAG_ENDS}](?=[\\x00-\\x7f])|[{CUT_SPACES}]")
# Negation scope (Das & Chen 2001; Pang, Lee & Vaithyanathan 2002): a negator turns the words after
# it, up to the end of their clause, into other features for the Naive-Bayes branch, so "not good"
# no longer counts as "good". "t" is what is left of "n't": "wasn't" is read as "wasn", "'", "t".
NEGATORS = frozenset(
    "not no never t nothing nobody none nowhere neither nor cannot aint arent cant couldnt didnt "  # noqa: SIM905
    "doesnt dont hadnt hasnt havent isnt shouldnt wasnt werent wont wouldnt".split()
)
CLAUSE_END = re.compile(r"[^\w\s]*[.,:;!?][^\w\s]*|but")  # ends a clause, and a negation's scope
PLAIN, NEGATOR, ENDS_CLAUSE = 0, 1, 2  # a token's role in negation scope (`word_roles`)
WINDOW_CHARS_PER_TOKEN = 8  # the first window's width per kept token, widened 4-fold as needed
MAX_WINDOW_CHARS = 1 << 20  # text beyond this is never tokenized, whatever it holds


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


def encode_kept(
    tokenizer: Tokenizer, texts: Sequence[str], keep: int, truncating: Literal["pre", "post"]
) -> list[list[int]]:
    """The token ids of each text that padding to `keep` tokens keeps (its last `keep` ids for
    `truncating="pre"`, its first for "post"), tokenizing only about as much text as they need.

    A text of more than `WINDOW_CHARS_PER_TOKEN * keep` characters is tokenized from a window at
    its kept end, widened 4-fold (up to MAX_WINDOW_CHARS) until it yields `keep` tokens. The
    window is cut at whitespace outside any HTML tag (`_tail_start`, `_head_end`), where the
    tokens on its side are exactly those of the whole text.

    Guarantee, for a tokenizer made by `fit`: the result equals `encode`'s ids cut to `keep`,
    for every text whose kept-end MAX_WINDOW_CHARS characters yield `keep` tokens after such a
    cut (any prose does). Otherwise (say, a megabyte without a space) it is the tokens of those
    MAX_WINDOW_CHARS characters alone, from the cut if there is one. Either way no more than
    MAX_WINDOW_CHARS characters of a text are ever tokenized, however long it is.
    """
    kept: list[list[int]] = [[] for _ in texts]
    pending = list(range(len(texts)))
    chars = min(WINDOW_CHARS_PER_TOKEN * keep, MAX_WINDOW_CHARS)
    while pending:
        last_round = chars >= MAX_WINDOW_CHARS
        windows = [_window(texts[i], chars, truncating, last_round) for i in pending]
        widen = []
        for i, ids in zip(pending, encode(tokenizer, windows), strict=True):
            if len(ids) >= keep or len(texts[i]) <= chars or last_round:
                kept[i] = ids[-keep:] if truncating == "pre" else ids[:keep]
            else:
                widen.append(i)
        pending, chars = widen, min(chars * 4, MAX_WINDOW_CHARS)
    return kept


def _window(text: str, chars: int, truncating: str, last_round: bool) -> str:
    """`text` itself if at most `chars` long, else its kept end cut where the tokens on that side
    are the whole text's: empty when no such cut exists, except in the last round."""
    if len(text) <= chars:
        return text
    if truncating == "pre":
        window = text[-chars:]
        start = _tail_start(window)
        return window[start:] if start is not None else (window if last_round else "")
    window = text[:chars]
    end = _head_end(window)
    return window[:end] if end is not None else (window if last_round else "")


def _tail_start(window: str) -> int | None:
    """Where tokenizing `window`, the end of a text, may start: just past whitespace, so no word
    is split (and NFKC joins nothing across it), where no HTML tag can be open: past a sure tag
    end with no `<` since, or past the last character that could end a tag."""
    last_closer = max(window.rfind(char) for char in TAG_CLOSERS)
    closed = False
    for event in _CUT_EVENTS.finditer(window):
        char = event.group()
        if char in CUT_SPACES:
            if closed or event.start() > last_closer:
                return event.end()
        else:
            closed = char in TAG_ENDS
    return None


def _head_end(window: str) -> int | None:
    """Where `window`, the start of a text, may end: at the last whitespace outside any HTML tag
    (no `<` since the text's start or the last sure tag end), so no word or tag is split."""
    closed, end = True, None
    for event in _CUT_EVENTS.finditer(window):
        char = event.group()
        if char in CUT_SPACES:
            end = event.start() if closed else end
        else:
            closed = char in TAG_ENDS
    return end


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


def word_roles(tokenizer: Tokenizer) -> np.ndarray:
    """Each id's role in negation scope [vocab size]: NEGATOR, ENDS_CLAUSE or PLAIN. Punctuation
    ends a clause only as a token of its own (`split_punctuation: true`, the default)."""
    roles = np.full(tokenizer.get_vocab_size(), PLAIN, dtype=np.int8)
    for token, index in tokenizer.get_vocab().items():
        if token.lower() in NEGATORS:
            roles[index] = NEGATOR
        elif CLAUSE_END.fullmatch(token.lower()):
            roles[index] = ENDS_CLAUSE
    return roles


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
