"""A trained model's word embedding, made visible: each word's nearest neighbours, and a 2-D map.

Trained on sentiment alone, the embedding tends to put words that push a review the same way
close together, such as "boring" and "dull": that is what the model learned words mean.
`rnn-sentiment neighbours WORD...` prints the neighbours; `embedding_report` gives them with the
map, for the training's MLflow run. Words only: with `bigrams` or `trigrams`, a
phrase adds a vector of its own to its last word's, and those phrase vectors are left out.

An ensemble's members each learn their own embedding space, whose axes mean nothing to the other
members, so their vectors cannot be averaged. Each member's word vectors are scaled to unit
length and the members' are concatenated (then divided by the square root of their number):
the cosine of two words is then the mean of their cosines over the members, and one map holds
them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from tokenizers import Tokenizer

from rnn_sentiment import checkpoint, text
from rnn_sentiment.errors import UserError, exit_on_user_error
from rnn_sentiment.files import require_file
from rnn_sentiment.models import Ensemble, Network

# Words whose neighbours show what the model learned; those outside a vocabulary are skipped.
PROBES = (
    "good",
    "great",
    "bad",
    "awful",
    "boring",
    "masterpiece",
    "waste",
    "funny",
    "not",
    "plot",
)
FIRST_WORD = max(text.PAD_ID, text.UNK_ID) + 1  # ids below are reserved, not words
MAP_WORDS = 200
NEIGHBOURS = 10


def word_vectors(model: Network) -> np.ndarray:
    """Unit-length vectors [V, D] of every id, such that a dot product is a cosine similarity
    (for an ensemble, the mean over its members: see the module's docstring)."""
    members = model.members if isinstance(model, Ensemble) else [model]
    parts = []
    for member in members:
        weight = member.embedding.weight.detach().float().cpu().numpy()  # [V, E]
        norms = np.linalg.norm(weight, axis=1, keepdims=True)
        parts.append(weight / np.maximum(norms, np.finfo(np.float32).tiny))  # padding row is zero
    return np.concatenate(parts, axis=1) / np.sqrt(len(parts))  # [V, M*E]


def vocabulary(tokenizer: Tokenizer) -> list[str]:
    """Each id's token; ids count down in frequency in the train split, after the reserved two."""
    return [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]


def word_id(tokenizer: Tokenizer, word: str) -> int:
    """The id of `word` as the model reads it (normalised by the tokenizer, so `Good` is `good`)."""
    ids = tokenizer.encode(word).ids
    if len(ids) != 1:
        raise UserError(f"'{word}' reads as {len(ids)} tokens, not one word: give single words")
    if ids[0] < FIRST_WORD:
        raise UserError(
            f"'{word}' is not in the model's vocabulary of {tokenizer.get_vocab_size()} ids: "
            "try another word"
        )
    return ids[0]


def neighbours(
    vectors: np.ndarray, words: Sequence[str], index: int, k: int
) -> list[tuple[str, float]]:
    """The `k` words nearest to word `index` by cosine similarity, nearest first, with the
    cosine (`vectors` from `word_vectors`, `words` from `vocabulary`); reserved ids are never
    neighbours."""
    similarity = vectors[FIRST_WORD:] @ vectors[index]  # [V - FIRST_WORD]
    similarity[index - FIRST_WORD] = -np.inf  # a word is not its own neighbour
    nearest = np.argsort(-similarity, kind="stable")[:k]
    return [(words[FIRST_WORD + i], float(similarity[i])) for i in nearest]


def format_neighbours(word: str, nearest: list[tuple[str, float]]) -> str:
    return f"{word}: " + ", ".join(f"{other} {cosine:.2f}" for other, cosine in nearest)


@torch.no_grad()
def probability_alone(model: Network, ids: Sequence[int]) -> np.ndarray:
    """The probability of a positive review that the model gives each word read on its own."""
    model.eval()
    device = next(model.parameters()).device
    logits = model(torch.tensor(ids, device=device).unsqueeze(1))  # [N] from [N, 1]
    return torch.sigmoid(logits.float()).cpu().numpy()


def embedding_map(
    model: Network, tokenizer: Tokenizer, count: int = MAP_WORDS, probes: Sequence[str] = PROBES
) -> Figure:
    """The `count` most frequent words (punctuation left out) and the `probes` in the vocabulary,
    at their vectors' first two principal components, each coloured by the probability the
    model gives it read alone; probes in bold."""
    words = vocabulary(tokenizer)
    frequent = [i for i in range(FIRST_WORD, len(words)) if any(c.isalpha() for c in words[i])]
    highlighted = [tokenizer.token_to_id(word) for word in probes]
    highlighted = [i for i in highlighted if i is not None and i >= FIRST_WORD]
    ids = list(dict.fromkeys(frequent[:count] + highlighted))
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(word_vectors(model)[ids])  # [N, 2]
    figure = Figure(figsize=(10, 9))
    ax = figure.subplots()
    dots = ax.scatter(
        points[:, 0], points[:, 1], c=probability_alone(model, ids), cmap="RdYlGn", vmin=0, vmax=1
    )
    for i, (x, y) in zip(ids, points, strict=True):
        bold = i in highlighted
        ax.annotate(words[i], (x, y), fontsize=9 if bold else 7, weight="bold" if bold else None)
    figure.colorbar(dots, ax=ax, label="probability of positive, the word read alone")
    first, second = pca.explained_variance_ratio_
    ax.set(
        title=f"Word embedding: the {len(ids)} words mapped, by principal components",
        xlabel=f"first component ({first:.0%} of variance)",
        ylabel=f"second component ({second:.0%} of variance)",
    )
    return figure


def embedding_report(
    model: Network, tokenizer: Tokenizer, k: int = NEIGHBOURS
) -> tuple[str, Figure]:
    """The neighbours of the probe words in the vocabulary, as text, and the map."""
    vectors, words = word_vectors(model), vocabulary(tokenizer)
    members = len(model.members) if isinstance(model, Ensemble) else 1
    lines = [
        "Nearest words by cosine similarity of their embeddings"
        + (f" (mean over the ensemble's {members} members)" if members > 1 else "")
    ]
    missing = []
    for probe in PROBES:
        index = tokenizer.token_to_id(probe)
        if index is None or index < FIRST_WORD:
            missing.append(probe)
        else:
            lines.append(format_neighbours(probe, neighbours(vectors, words, index, k)))
    if missing:
        lines.append(f"not in the vocabulary: {', '.join(missing)}")
    return "\n".join(lines) + "\n", embedding_map(model, tokenizer)


def load(model_dir: Path) -> tuple[Network, Tokenizer]:
    """The model and tokenizer of a train stage's folder, refusing a mismatched pair."""
    model = checkpoint.load(model_dir / checkpoint.MODEL_FILE).model
    tokenizer = text.load(str(require_file(model_dir / checkpoint.TOKENIZER_FILE)))
    if tokenizer.get_vocab_size() != model.config.vocab_size:
        raise UserError(
            f"{model_dir}: the tokenizer has {tokenizer.get_vocab_size()} ids but the model "
            f"{model.config.vocab_size}: retrain, so that both come from one run"
        )
    return model, tokenizer


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """`rnn-sentiment neighbours WORD...`: one line per word, its nearest words and cosines."""
    parser = argparse.ArgumentParser(
        prog="rnn-sentiment neighbours",
        description="The words nearest to each WORD in a trained model's word embedding, by "
        "cosine similarity (an ensemble's: the mean over its members).",
    )
    parser.add_argument("words", nargs="+", metavar="WORD")
    parser.add_argument(
        "--model", type=Path, default=Path("models"), help="the train stage's folder (models)"
    )
    parser.add_argument("-k", type=int, default=NEIGHBOURS, help="neighbours per word (10)")
    args = parser.parse_args(argv)
    if args.k < 1:
        raise UserError(f"-k {args.k}: ask for at least 1 neighbour")
    model, tokenizer = load(args.model)
    ids = [word_id(tokenizer, word) for word in args.words]  # every word checked before output
    vectors, words = word_vectors(model), vocabulary(tokenizer)
    for word, index in zip(args.words, ids, strict=True):
        print(format_neighbours(word, neighbours(vectors, words, index, args.k)))
    return 0
