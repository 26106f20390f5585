"""SentimentRNN: shapes, exact padding invariance, config validation and checkpoint round trips."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from rnn_sentiment import checkpoint
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import (
    MAX_TRIGRAM_VOCAB,
    Ensemble,
    ModelConfig,
    NaiveBayesBranch,
    SentimentRNN,
    build,
    count_parameters,
)
from rnn_sentiment.params import ModelParams, PadParams
from rnn_sentiment.text import ENDS_CLAUSE, NEGATOR, PAD_ID, PLAIN

CELLS = ("rnn", "lstm", "gru")
POOLINGS = ("last", "mean", "max", "mean_max")
COMBOS = list(itertools.product(CELLS, POOLINGS, (False, True)))
SMALL = {"vocab_size": 50, "embedding_dim": 8, "hidden_dim": 6, "cell": "rnn", "pooling": "last"}


def make_model(**overrides: object) -> SentimentRNN:
    torch.manual_seed(0)
    return SentimentRNN(ModelConfig(**{**SMALL, **overrides})).eval()


def pad(tokens: list[int], amount: int, side: str) -> torch.Tensor:
    padding = [PAD_ID] * amount
    return torch.tensor([padding + tokens if side == "pre" else tokens + padding])


REVIEWS = [[5, 17, 3, 42, 8, 9, 11], [2, 30], [7, 7, 12, 49, 1, 20, 33, 4, 6, 21, 18, 14]]
LABELS = torch.tensor([1.0, 0.0, 1.0])


@pytest.mark.parametrize(("cell", "pooling", "bidirectional"), COMBOS)
def test_output_is_one_logit_per_review(cell: str, pooling: str, bidirectional: bool) -> None:
    model = make_model(cell=cell, pooling=pooling, bidirectional=bidirectional)
    ids = torch.randint(2, 50, (3, 12))
    ids[1, 9:] = PAD_ID
    logits = model(ids)
    assert logits.shape == (3,)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("cell", CELLS)
def test_deep_configuration_runs_in_training_mode(cell: str) -> None:
    model = make_model(
        cell=cell,
        num_layers=2,
        bidirectional=True,
        dropout=0.3,
        embedding_dropout=0.2,
        word_dropout=0.1,
        input_layers=[10, 7],
        head_layers=(5,),
        pooling="mean_max",
    ).train()
    assert model(torch.randint(0, 50, (3, 12))).shape == (3,)


@pytest.mark.parametrize(("cell", "pooling", "bidirectional"), COMBOS)
def test_padding_side_and_amount_do_not_change_the_logit(
    cell: str, pooling: str, bidirectional: bool
) -> None:
    model = make_model(cell=cell, pooling=pooling, bidirectional=bidirectional, num_layers=2)
    with torch.no_grad():
        for review in REVIEWS:
            bare = model(pad(review, 0, "post"))
            for side in ("pre", "post"):
                torch.testing.assert_close(model(pad(review, 50, side)), bare, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("cell", "pooling", "bidirectional"), COMBOS)
def test_a_mixed_batch_gives_each_row_its_own_logit(
    cell: str, pooling: str, bidirectional: bool
) -> None:
    model = make_model(cell=cell, pooling=pooling, bidirectional=bidirectional)
    width = 15
    rows = [
        pad(REVIEWS[0], width - len(REVIEWS[0]), "pre"),
        pad(REVIEWS[1], width - len(REVIEWS[1]), "post"),
        torch.tensor([[PAD_ID, *REVIEWS[2][:6], PAD_ID, PAD_ID, *REVIEWS[2][6:]]]),
    ]
    with torch.no_grad():
        batched = model(torch.cat(rows))
        alone = torch.cat([model(torch.tensor([review])) for review in REVIEWS])
    # Padding inside a row (the third) is dropped too: the tokens are read in order.
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-6)


def test_word_dropout_drops_whole_tokens_in_training_only() -> None:
    model = make_model(word_dropout=0.5, cell="gru", pooling="mean")
    steps = []
    model.word_dropout.register_forward_hook(lambda module, args, out: steps.append(out))
    ids = torch.randint(2, 50, (4, 200))
    model.train()(ids)
    dropped = (steps[-1] == 0).all(-1)  # [B, S]: every feature of the step is zero
    assert 0.4 < dropped.float().mean() < 0.6
    kept = steps[-1][~dropped]
    torch.testing.assert_close(kept, 2 * model.embedding(ids)[~dropped])  # rescaled by 1/(1-p)
    model.eval()(ids)
    torch.testing.assert_close(steps[-1], model.embedding(ids))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("position", [0, 3, 6])
def test_every_token_matters(pooling: str, position: int) -> None:
    model = make_model(cell="gru", pooling=pooling, bidirectional=True)
    review = REVIEWS[0]
    changed = [*review]
    changed[position] = 48
    with torch.no_grad():
        assert not torch.allclose(model(pad(review, 5, "post")), model(pad(changed, 5, "post")))


@pytest.mark.parametrize(("cell", "pooling", "bidirectional"), COMBOS)
def test_an_empty_review_gives_a_finite_logit(cell: str, pooling: str, bidirectional: bool) -> None:
    model = make_model(cell=cell, pooling=pooling, bidirectional=bidirectional)
    ids = torch.tensor([[PAD_ID] * 12, [4, 5, 6] + [PAD_ID] * 9])
    with torch.no_grad():
        logits = model(ids)
        alone = model(ids[1:, :3])
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[1:], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_reach_the_embedding_and_the_recurrent_weights(cell: str) -> None:
    model = make_model(cell=cell, bidirectional=True, num_layers=2).train()
    ids = torch.randint(2, 50, (3, 12))
    ids[0, :4] = PAD_ID
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids), torch.ones(3))
    loss.backward()
    assert model.embedding.weight.grad is not None
    assert model.embedding.weight.grad.abs().sum() > 0
    assert model.embedding.weight.grad[PAD_ID].abs().sum() == 0
    for name, param in model.named_parameters():
        if name.startswith("recurrent."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cell": "transformer"}, r"cell: Input should be 'rnn', 'lstm' or 'gru' \(got 'trans"),
        ({"hidden_dim": 0}, r"hidden_dim: Input should be greater than or equal to 1 \(got 0\)"),
        ({"vocab_size": 1}, r"vocab_size: Input should be greater than or equal to 2 \(got 1\)"),
        ({"embedding_dim": 2.5}, r"embedding_dim: Input should be a valid integer"),
        ({"num_layers": True}, r"num_layers: Input should be a valid integer \(got True\)"),
        ({"dropout": 1.0}, r"dropout: Input should be less than 1 \(got 1.0\)"),
        ({"dropout": float("nan")}, r"dropout: Input should be a finite number"),
        ({"embedding_dropout": -0.1}, r"embedding_dropout: Input should be greater than or equal"),
        ({"word_dropout": 1}, r"word_dropout: Input should be less than 1 \(got 1\)"),
        ({"pooling": "attention"}, r"pooling: Input should be 'last', 'mean', 'max' or 'mean_max'"),
        ({"input_layers": [8, 0]}, r"input_layers\.1: Input should be greater than or equal to 1"),
        ({"head_layers": 16}, r"head_layers: Input should be a valid tuple"),
        ({"bidirectional": "yes"}, r"bidirectional: Input should be a valid boolean"),
        ({"bigrams": -1}, r"bigrams: Input should be greater than or equal to 0 \(got -1\)"),
        ({"trigrams": 1.5}, r"trigrams: Input should be a valid integer"),
        (
            {"trigrams": 9, "vocab_size": 3_000_000},
            r"vocab_size: trigrams need a vocabulary below 2097152 words: lower tokenize\.max_f",
        ),
        ({"members": 0}, r"members: Input should be greater than or equal to 1 \(got 0\)"),
        ({"hiden_dim": 8}, r"unknown key 'hiden_dim'; allowed here: bidirectional, bigrams"),
        ({"vocab_size": None}, r"vocab_size: Input should be a valid integer"),
    ],
)
def test_impossible_configs_are_refused_by_name_in_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        ModelConfig.from_dict({**SMALL, **overrides})
    assert "\n" not in str(info.value)


def test_the_architecture_is_defined_once_with_the_params_defaults() -> None:
    """Defaults and validation come from `params.ModelParams`: params.yaml's block, plus a size."""
    config = ModelConfig(vocab_size=50)
    assert config.model_dump(exclude={"vocab_size"}) == ModelParams().model_dump()
    with pytest.raises(ValueError, match="vocab_size"):
        ModelConfig.from_dict({"hidden_dim": 8})
    assert (MAX_TRIGRAM_VOCAB - 1) ** 3 < torch.iinfo(torch.int64).max < MAX_TRIGRAM_VOCAB**3
    ModelConfig(vocab_size=MAX_TRIGRAM_VOCAB - 1, trigrams=1)


def test_config_round_trips_through_a_plain_dict() -> None:
    config = ModelConfig(vocab_size=50, cell="lstm", input_layers=[16], head_layers=[8, 4])
    assert config.input_layers == (16,)
    data = config.to_dict()
    assert data["head_layers"] == [8, 4]
    assert ModelConfig.from_dict(data) == config


# `model_config` as checkpoints written so far hold it: every key (tuples as lists), and older ones
# from before n-grams, word dropout and ensembles, which lack those keys.
SAVED_CONFIG = {
    "vocab_size": 50,
    "embedding_dim": 8,
    "bigrams": 4,
    "trigrams": 3,
    "embedding_dropout": 0.0,
    "word_dropout": 0.3,
    "input_layers": [],
    "cell": "gru",
    "hidden_dim": 6,
    "num_layers": 1,
    "bidirectional": True,
    "dropout": 0.0,
    "pooling": "mean_max",
    "head_layers": [4],
    "members": 2,
}
OLDER_CONFIG = {
    "vocab_size": 50,
    "embedding_dim": 8,
    "embedding_dropout": 0.2,
    "input_layers": [5],
    "cell": "rnn",
    "hidden_dim": 6,
    "num_layers": 2,
    "bidirectional": False,
    "dropout": 0.1,
    "pooling": "last",
    "head_layers": [],
}


@pytest.mark.parametrize("saved", [SAVED_CONFIG, OLDER_CONFIG])
def test_checkpoints_already_written_keep_loading(tmp_path: Path, saved: dict) -> None:
    torch.manual_seed(0)
    config = ModelConfig.from_dict(saved)
    assert {k: v for k, v in config.to_dict().items() if k in saved} == saved
    model = build(config).eval()
    ids = torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS])
    model.learn_ngrams(ids, LABELS)
    payload = {
        "model_config": dict(saved),
        "pad": {"maxlen": 15, "padding": "post", "truncating": "pre"},
        "state_dict": model.state_dict(),
    }
    torch.save(payload, tmp_path / "model.pt")
    restored = checkpoint.load(tmp_path / "model.pt")
    assert restored.model.config == config and restored.pad.maxlen == 15
    with torch.no_grad():
        torch.testing.assert_close(restored.model(ids), model(ids), rtol=0, atol=0)


def test_a_checkpoint_with_a_bad_config_is_refused_in_one_line(tmp_path: Path) -> None:
    model = make_model()
    payload = {
        "model_config": {**model.config.to_dict(), "hiden_dim": 8},
        "pad": PadParams().model_dump(),
        "state_dict": model.state_dict(),
    }
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(UserError, match=r"not a checkpoint this project wrote .*key 'hiden_d"):
        checkpoint.load(tmp_path / "model.pt")


def test_checkpoint_reproduces_the_logits(tmp_path: Path) -> None:
    model = make_model(cell="gru", bidirectional=True, pooling="mean_max", head_layers=(4,))
    ids = torch.randint(0, 50, (3, 12))
    path = tmp_path / "model.pt"
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, path)

    checkpoint = torch.load(path, weights_only=True)
    restored = SentimentRNN(ModelConfig.from_dict(checkpoint["config"]))
    restored.load_state_dict(checkpoint["state_dict"])
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), model(ids), rtol=0, atol=0)
    assert count_parameters(restored) == count_parameters(model) > 0


def ngram_model(**overrides: object) -> SentimentRNN:
    model = make_model(bigrams=4, trigrams=3, **overrides)
    model.learn_ngrams(
        torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS]), LABELS
    )
    return model


def test_learned_bigrams_are_the_most_frequent_pairs_of_known_words() -> None:
    model = make_model(bigrams=3)
    rows = torch.tensor(
        [
            [0, 0, 5, 6, 7, 5, 6],  # pre-padded: (5, 6) twice, (6, 7), (7, 5)
            [5, 6, 1, 7, 5, 0, 0],  # (5, 6), (7, 5); pairs with the unknown word 1 don't count
            [9, 8, 0, 0, 0, 0, 0],  # (9, 8) once: loses the tie to (6, 7)
        ]
    )
    model.learn_ngrams(rows, torch.zeros(len(rows)))
    vocab = SMALL["vocab_size"]
    keys = model.ngrams["bigrams"].keys
    assert keys.tolist() == [5 * vocab + 6, 6 * vocab + 7, 7 * vocab + 5]
    # Fewer distinct pairs than slots: the rest can match nothing.
    model.learn_ngrams(torch.tensor([[2, 3, 0]]), torch.zeros(1))
    assert keys[0] == 2 * vocab + 3
    assert (keys[1:] > vocab * vocab).all()


def test_learned_trigrams_are_the_most_frequent_triples_of_known_words() -> None:
    model = make_model(trigrams=2)
    rows = torch.tensor(
        [
            [5, 6, 7, 5, 6, 7, 0],  # (5, 6, 7) twice, (6, 7, 5), (7, 5, 6)
            [0, 0, 7, 5, 6, 1, 9],  # (7, 5, 6) again; triples with the unknown word 1 don't count
        ]
    )
    model.learn_ngrams(rows, torch.zeros(len(rows)))
    vocab = SMALL["vocab_size"]
    assert model.ngrams["trigrams"].keys.tolist() == [
        (5 * vocab + 6) * vocab + 7,
        (7 * vocab + 5) * vocab + 6,
    ]


@pytest.mark.parametrize(("table", "ngram"), [("bigrams", (4, 6)), ("trigrams", (12, 49, 22))])
def test_an_ngram_embedding_changes_only_reviews_holding_that_ngram(
    table: str, ngram: tuple[int, ...]
) -> None:
    model = make_model(bigrams=40, trigrams=40, cell="gru", pooling="mean_max")
    ids = torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS])
    ids[2, 4] = 22  # a known word in place of the unknown 1: (12, 49, 22) is learned
    model.learn_ngrams(ids, LABELS)  # only the third review holds either n-gram
    key = 0
    for word in ngram:
        key = key * SMALL["vocab_size"] + word
    keys = model.ngrams[table].keys
    position = int(torch.searchsorted(keys, key))
    assert keys[position] == key
    with torch.no_grad():
        before = model(ids)
        model.ngrams[table].embedding.weight[position + 1] += 1.0  # row 0: "no learned n-gram"
        after = model(ids)
    torch.testing.assert_close(after[:2], before[:2], rtol=0, atol=0)
    assert not torch.allclose(after[2], before[2])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_ngrams_keep_the_logit_independent_of_padding(bidirectional: bool) -> None:
    model = ngram_model(cell="lstm", pooling="mean_max", bidirectional=bidirectional)
    assert model.ngrams["bigrams"].keys.max() < SMALL["vocab_size"] ** 2  # all slots hold pairs
    assert model.ngrams["trigrams"].keys.max() < SMALL["vocab_size"] ** 3
    with torch.no_grad():
        for review in REVIEWS:
            bare = model(pad(review, 0, "post"))
            for side in ("pre", "post"):
                torch.testing.assert_close(model(pad(review, 30, side)), bare, rtol=0, atol=1e-6)


def test_ngram_keys_travel_in_the_checkpoint(tmp_path: Path) -> None:
    model = ngram_model(cell="gru", bidirectional=True)
    checkpoint.save(tmp_path / "model.pt", model, PadParams())
    restored = checkpoint.load(tmp_path / "model.pt").model
    for name, ngrams in model.ngrams.items():
        torch.testing.assert_close(restored.ngrams[name].keys, ngrams.keys, rtol=0, atol=0)
    ids = torch.cat([pad(review, 15 - len(review), "pre") for review in REVIEWS])
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), model(ids), rtol=0, atol=0)


def test_an_ensemble_outputs_its_members_mean_logit_and_trains_each_member_apart() -> None:
    torch.manual_seed(0)
    ensemble = build(ModelConfig(**{**SMALL, "cell": "gru", "pooling": "mean_max", "members": 3}))
    assert isinstance(ensemble, Ensemble)
    assert isinstance(build(ModelConfig(**SMALL)), SentimentRNN)
    ids = torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS])
    ensemble.eval()
    with torch.no_grad():
        each = torch.stack([member(ids) for member in ensemble.members])
        torch.testing.assert_close(ensemble(ids), each.mean(0), rtol=0, atol=1e-6)
    assert each.std(0).min() > 0  # the members start apart

    ensemble.train()
    logits = ensemble(ids)
    assert logits.shape == (3, len(REVIEWS))
    logits[1].sum().backward()  # one member's loss reaches that member only
    grads = [member.embedding.weight.grad.abs().sum() for member in ensemble.members]
    assert grads[0] == grads[2] == 0 < grads[1]


def test_an_ensemble_with_ngrams_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ensemble = build(ModelConfig(**SMALL, bigrams=4, trigrams=3, members=2)).eval()
    ids = torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS])
    ensemble.learn_ngrams(ids, LABELS)
    alone = ngram_model()  # every member holds the n-grams one network learns from the rows
    for member in ensemble.members:
        for name, ngrams in member.ngrams.items():
            torch.testing.assert_close(ngrams.keys, alone.ngrams[name].keys, rtol=0, atol=0)
    checkpoint.save(tmp_path / "model.pt", ensemble, PadParams())
    restored = checkpoint.load(tmp_path / "model.pt").model
    assert isinstance(restored, Ensemble) and len(restored.members) == 2
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), ensemble(ids), rtol=0, atol=0)


def test_naive_bayes_ratios_count_each_ngram_once_per_review() -> None:
    vocab = SMALL["vocab_size"]
    branch = NaiveBayesBranch(order=2, size=100, vocab_size=vocab)
    rows = torch.tensor(
        [
            [5, 6, 5, 6, 0],  # positive: 5, 6, (5, 6) and (6, 5); (5, 6) twice counts once
            [0, 5, 7, 1, 0],  # negative: 5, 7, (5, 7); nothing with the unknown word 1
        ]
    )
    branch.learn(rows, torch.tensor([1.0, 0.0]))
    learned = dict(zip(branch.keys.tolist(), branch.ratios[1:].tolist(), strict=True))
    pair = {(5, 6): 5 * vocab + 6, (6, 5): 6 * vocab + 5, (5, 7): 5 * vocab + 7}
    assert set(learned) - {branch.keys.max().item()} == {5, 6, 7, *pair.values()}
    # Add-one counts over the 6 kept n-grams: positive rows hold 5, 6, (5,6), (6,5);
    # the negative one 5, 7, (5,7). p = (2,2,1,2,2,1)/10, q = (2,1,2,1,1,2)/9 in key order.
    ratio = torch.log(torch.tensor(9 / 10))
    assert learned[5] == pytest.approx(ratio.item())  # in both: no evidence but the totals
    assert learned[6] == pytest.approx((ratio + torch.log(torch.tensor(2.0))).item())
    assert learned[7] == pytest.approx((ratio - torch.log(torch.tensor(2.0))).item())
    assert learned[pair[(5, 6)]] == learned[6]  # twice in one review weighs as once


def test_the_naive_bayes_logit_sums_the_weighted_ratios_of_distinct_ngrams() -> None:
    branch = NaiveBayesBranch(order=3, size=200, vocab_size=SMALL["vocab_size"])
    review = REVIEWS[0] + REVIEWS[0][:3]  # repeats its first words, pair and triple
    reviews = [review, *REVIEWS[1:]]
    branch.learn(torch.cat([pad(r, 15 - len(r), "post") for r in reviews]), LABELS)
    with torch.no_grad():
        branch.weight.uniform_(-1, 1)
        branch.bias.fill_(0.25)
        present = set(review) | set(itertools.pairwise(review))
        present |= set(zip(review, review[1:], review[2:], strict=False))
        expected = 0.25
        for ngram in present:
            key = 0
            for word in ngram if isinstance(ngram, tuple) else (ngram,):
                key = key * SMALL["vocab_size"] + word
            position = int(torch.searchsorted(branch.keys, key))
            assert branch.keys[position] == key  # every n-gram of the review was learned
            expected += float(branch.weight[position + 1] * branch.ratios[position + 1])
        for side in ("pre", "post"):
            logit = branch(pad(review, 9, side))
            assert logit.item() == pytest.approx(expected, abs=1e-5)


def test_an_ensemble_with_a_naive_bayes_branch_trains_it_apart_and_round_trips(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    config = ModelConfig(**{**SMALL, "cell": "gru", "nb_features": 50})
    model = build(config)  # one network and the branch make an ensemble
    assert isinstance(model, Ensemble) and len(model.members) == 1
    ids = torch.cat([pad(review, 15 - len(review), "post") for review in REVIEWS])
    model.learn_ngrams(ids, LABELS)
    logits = model.train()(ids)
    assert logits.shape == (2, len(REVIEWS))
    logits[1].sum().backward()  # the branch's loss reaches the branch alone
    assert model.members[0].embedding.weight.grad.abs().sum() == 0
    assert model.naive_bayes.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.naive_bayes.weight.uniform_(-1, 1)
        model.eval()
        both = torch.stack([model.members[0](ids), model.naive_bayes(ids)]).mean(0)
        torch.testing.assert_close(model(ids), both, rtol=0, atol=1e-6)
    checkpoint.save(tmp_path / "model.pt", model, PadParams())
    restored = checkpoint.load(tmp_path / "model.pt").model
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), model(ids), rtol=0, atol=0)


def test_naive_bayes_triples_need_a_vocabulary_whose_keys_fit() -> None:
    too_large = {**SMALL, "vocab_size": MAX_TRIGRAM_VOCAB, "nb_features": 10}
    with pytest.raises(ValueError, match="nb_order below 3"):
        ModelConfig(**too_large)
    ModelConfig(**{**too_large, "nb_order": 2})


def test_the_naive_bayes_gradient_is_the_same_every_time() -> None:
    """Enough n-grams per batch for torch to spread the backward over threads, where indexing's
    backward would add in a different order each time."""
    torch.manual_seed(0)
    ids = torch.randint(2, 40, (64, 600))
    labels = (torch.arange(64) % 2).float()
    branch = NaiveBayesBranch(order=3, size=5000, vocab_size=40)
    branch.learn(ids, labels)
    with torch.no_grad():
        branch.weight.uniform_(-1, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        gradients = []
        for _ in range(5):
            branch.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(branch(ids), labels)
            loss.backward()
            gradients.append(branch.weight.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(gradient, gradients[0]) for gradient in gradients[1:])


NOT, END, GOOD, FILM = 3, 4, 10, 11  # a negator, a clause end ("."), two plain words


def negation_roles() -> torch.Tensor:
    roles = torch.full((SMALL["vocab_size"],), PLAIN, dtype=torch.int8)
    roles[NOT], roles[END] = NEGATOR, ENDS_CLAUSE
    return roles


def test_a_negation_turns_the_rest_of_its_clause_into_other_ngrams() -> None:
    vocab = SMALL["vocab_size"]
    branch = NaiveBayesBranch(order=2, size=100, vocab_size=vocab, negation=True)
    rows = torch.tensor(
        [
            [GOOD, FILM, 0, 0, 0],  # positive: "good film"
            [NOT, GOOD, FILM, END, GOOD],  # negative: "not good film. good"
        ]
    )
    branch.learn(rows, torch.tensor([1.0, 0.0]), negation_roles())
    learned = dict(zip(branch.keys.tolist(), branch.ratios[1:].tolist(), strict=True))
    plain = {GOOD, FILM, NOT, END, GOOD * vocab + FILM, END * vocab + GOOD}
    # Up to the ".", and every n-gram that holds a word of the scope: "film ." too.
    negated = {~GOOD, ~FILM, ~(NOT * vocab + GOOD), ~(GOOD * vocab + FILM), ~(FILM * vocab + END)}
    assert set(learned) - {branch.keys.max().item()} == plain | negated
    assert learned[~GOOD] < learned[GOOD]  # "good" after "not" is evidence of its own
    assert learned[~FILM] < 0 < learned[FILM]
    with torch.no_grad():
        branch.weight.uniform_(-1, 1)
        review = [NOT, GOOD, END, FILM]
        for side in ("pre", "post"):
            torch.testing.assert_close(
                branch(pad(review, 6, side)), branch(pad(review, 0, side)), rtol=0, atol=1e-6
            )


def test_a_negation_branch_keeps_its_roles_in_the_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(**{**SMALL, "nb_features": 50, "nb_negation": True})
    model = build(config)
    ids = torch.cat([pad([NOT, *review], 14 - len(review), "post") for review in REVIEWS])
    with pytest.raises(ValueError, match="needs the tokenizer's word roles"):
        model.learn_ngrams(ids, LABELS)
    model.learn_ngrams(ids, LABELS, negation_roles())
    with torch.no_grad():
        model.naive_bayes.weight.uniform_(-1, 1)
    checkpoint.save(tmp_path / "model.pt", model, PadParams())
    restored = checkpoint.load(tmp_path / "model.pt").model.eval()
    torch.testing.assert_close(restored.naive_bayes.roles, negation_roles(), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), model.eval()(ids), rtol=0, atol=0)
    without = build(config.model_copy(update={"nb_negation": False}))
    assert "naive_bayes.roles" not in without.state_dict()  # as checkpoints written before
