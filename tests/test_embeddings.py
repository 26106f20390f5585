"""Word embeddings made visible: neighbours of a hand-set embedding, an ensemble's mean cosine,
the map and the report, and `rnn-sentiment neighbours` with its one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from tokenizers import Tokenizer

from rnn_sentiment import cli, embeddings, text
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import ModelConfig, Network, build
from rnn_sentiment.params import ModelParams, Params, TokenizeParams, TrainParams
from rnn_sentiment.stages import train
from tests.conftest import NEGATIVE, POSITIVE, synthetic_padded

# Two-dimensional word vectors, set by hand: sentiment along the first axis.
VECTORS = {
    "good": (1.0, 0.0),
    "great": (0.9, 0.2),
    "excellent": (0.6, 0.5),
    "film": (0.0, 1.0),
    "bad": (-1.0, 0.1),
    "awful": (-0.8, -0.3),
}
# A second member's space: the same words, other axes (rotated, scaled, one word moved).
OTHER = {word: (-y, 2 * x) for word, (x, y) in VECTORS.items()} | {"excellent": (0.0, -1.0)}


def hand_set(spaces: list[dict[str, tuple[float, float]]]) -> tuple[Network, Tokenizer]:
    """A model of one member per space, whose word vectors are those of the space. The unknown
    word's vector equals 'good's, so a neighbour list that let reserved ids in would show it."""
    tokenizer = text.fit([" ".join(VECTORS)], TokenizeParams(max_features=50))
    config = ModelConfig(
        vocab_size=tokenizer.get_vocab_size(), embedding_dim=2, hidden_dim=2, members=len(spaces)
    )
    torch.manual_seed(0)
    model = build(config)
    members = model.members if len(spaces) > 1 else [model]
    for member, space in zip(members, spaces, strict=True):
        weight = member.embedding.weight.data
        weight[text.UNK_ID] = torch.tensor(space["good"])
        for word, vector in space.items():
            weight[tokenizer.token_to_id(word)] = torch.tensor(vector)
    return model.eval(), tokenizer


def cosine(space: dict[str, tuple[float, float]], a: str, b: str) -> float:
    u, v = np.array(space[a]), np.array(space[b])
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def expected_neighbours(spaces: list[dict], word: str, k: int) -> list[tuple[str, float]]:
    """By definition: the other words, by their mean cosine to `word` over the spaces."""
    others = [w for w in VECTORS if w != word]
    mean = {w: np.mean([cosine(space, word, w) for space in spaces]) for w in others}
    return sorted(mean.items(), key=lambda kv: -kv[1])[:k]


@pytest.mark.parametrize("spaces", [[VECTORS], [VECTORS, OTHER]], ids=["one model", "ensemble"])
@pytest.mark.parametrize("word", ["good", "bad", "film"])
def test_neighbours_are_the_nearest_words_by_mean_cosine(spaces: list[dict], word: str) -> None:
    model, tokenizer = hand_set(spaces)
    vectors, words = embeddings.word_vectors(model), embeddings.vocabulary(tokenizer)
    found = embeddings.neighbours(vectors, words, tokenizer.token_to_id(word), k=4)
    expected = expected_neighbours(spaces, word, k=4)
    assert [w for w, _ in found] == [w for w, _ in expected]
    np.testing.assert_allclose([c for _, c in found], [c for _, c in expected], rtol=1e-6)


def test_the_ensemble_changes_the_neighbours() -> None:
    """The second space moves 'excellent' away from 'good': the mean must see it."""
    alone = expected_neighbours([VECTORS], "good", k=5)
    together = expected_neighbours([VECTORS, OTHER], "good", k=5)
    assert [w for w, _ in alone] != [w for w, _ in together]


def test_a_word_is_read_as_the_tokenizer_reads_it() -> None:
    _, tokenizer = hand_set([VECTORS])
    assert embeddings.word_id(tokenizer, "  GOOD ") == tokenizer.token_to_id("good")
    with pytest.raises(UserError, match=r"'zebra' is not in the model's vocabulary of 8 ids"):
        embeddings.word_id(tokenizer, "zebra")
    with pytest.raises(UserError, match="'good film' reads as 2 tokens, not one word"):
        embeddings.word_id(tokenizer, "good film")


def test_map_shows_frequent_words_and_probes_coloured_by_their_probability() -> None:
    model, tokenizer = hand_set([VECTORS])
    words = embeddings.vocabulary(tokenizer)
    figure = embeddings.embedding_map(model, tokenizer, count=2, probes=("great", "zebra"))
    ax = figure.axes[0]
    frequent = words[embeddings.FIRST_WORD : embeddings.FIRST_WORD + 2]
    assert [t.get_text() for t in ax.texts] == [*frequent, "great"]
    assert [t.get_text() for t in ax.texts if t.get_weight() == "bold"] == ["great"]
    ids = [tokenizer.token_to_id(t.get_text()) for t in ax.texts]
    colours = ax.collections[0].get_array()
    np.testing.assert_allclose(colours, embeddings.probability_alone(model, ids), rtol=1e-6)
    figure.savefig(io.BytesIO(), format="png")


def test_report_lists_the_probes_it_knows_and_names_the_others() -> None:
    model, tokenizer = hand_set([VECTORS, OTHER])
    report, figure = embeddings.embedding_report(model, tokenizer, k=2)
    lines = report.splitlines()
    assert lines[0].endswith("(mean over the ensemble's 2 members)")
    vectors, words = embeddings.word_vectors(model), embeddings.vocabulary(tokenizer)
    known = [p for p in embeddings.PROBES if p in VECTORS]
    assert lines[1:-1] == [
        embeddings.format_neighbours(
            probe, embeddings.neighbours(vectors, words, tokenizer.token_to_id(probe), 2)
        )
        for probe in known
    ]
    unknown = [p for p in embeddings.PROBES if p not in VECTORS]
    assert lines[-1] == f"not in the vocabulary: {', '.join(unknown)}"
    assert isinstance(figure, Figure)


def test_a_trained_embedding_puts_sentiment_words_with_their_kind() -> None:
    """The tutorial's point, on the test fixtures' reviews: a cue word is closer to the cues of
    its own sentiment than to the other sentiment's, on average over the cues (a single cue seen
    a few dozen times may still sit near its random start)."""
    arrays, tokenizer = synthetic_padded(per_class=48)
    params = TrainParams(
        model=ModelParams(embedding_dim=8, hidden_dim=8, members=2), epochs=3, batch_size=8, lr=0.03
    )
    model = train.run(params, 0, arrays, tokenizer, torch.device("cpu")).model
    vectors = embeddings.word_vectors(model)

    def mean_cosine(word: str, others: list[str]) -> float:
        ids = [tokenizer.token_to_id(other) for other in others if other != word]
        return float(np.mean(vectors[ids] @ vectors[tokenizer.token_to_id(word)]))

    margins = [
        mean_cosine(word, own) - mean_cosine(word, other)
        for own, other in ((POSITIVE, NEGATIVE), (NEGATIVE, POSITIVE))
        for word in own
    ]
    assert np.mean(margins) > 0.2
    report, figure = embeddings.embedding_report(model, tokenizer)
    assert report.splitlines()[1].startswith("great: ")
    figure.savefig(io.BytesIO(), format="png")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    model, tokenizer = hand_set([VECTORS])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    train.write_model_dir(tmp_path / "models", model, Params(), tmp_path / "tokenizer.json")
    return tmp_path / "models"


def neighbours(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["neighbours", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_each_words_neighbours(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = neighbours(["Good", "awful", "--model", str(model_dir), "-k", "2"], capsys)
    assert code == 0
    assert out.splitlines() == [
        embeddings.format_neighbours(word, expected_neighbours([VECTORS], word.lower(), k=2))
        for word in ("Good", "awful")
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["good", "zebra"], "error: 'zebra' is not in the model's vocabulary of 8 ids"),
        (["good", "-k", "0"], "error: -k 0: ask for at least 1 neighbour"),
    ],
)
def test_cli_refuses_bad_input_in_one_line_before_printing(
    model_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = neighbours([*argv, "--model", str(model_dir)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_names_a_missing_model_or_a_mismatched_tokenizer(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = neighbours(["good", "--model", str(tmp_path / "nowhere")], capsys)
    assert code == 2
    missing = tmp_path / "nowhere" / "model.pt"
    assert err == f"error: no model at {missing}: run `dvc repro` to train one, or pass --model\n"
    text.fit(["just three words"], TokenizeParams()).save(str(model_dir / "tokenizer.json"))
    code, _, err = neighbours(["good", "--model", str(model_dir)], capsys)
    assert code == 2
    assert "the tokenizer has 5 ids but the model 8: retrain" in err
