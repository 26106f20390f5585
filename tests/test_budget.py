"""The memory budget: estimates from params alone, refusals that name the keys, no allocation."""

from __future__ import annotations

import itertools
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from rnn_sentiment import budget, params, presets
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import ModelConfig, build, count_parameters
from rnn_sentiment.stages import pad

REPO = Path(__file__).resolve().parents[1]
IMDB_TRAIN_ROWS = 25_000


def test_parameters_are_counted_exactly_without_building_the_model() -> None:
    for cell, pooling, bidirectional, layers, mlps, ngrams in itertools.product(
        ("rnn", "lstm", "gru"),
        ("last", "mean_max"),
        (False, True),
        (1, 2),
        ((), (7, 5)),
        ((0, 0), (5, 3)),
    ):
        config = ModelConfig(
            vocab_size=37,
            embedding_dim=6,
            hidden_dim=5,
            cell=cell,
            pooling=pooling,
            bidirectional=bidirectional,
            num_layers=layers,
            input_layers=mlps,
            head_layers=mlps[1:],
            bigrams=ngrams[0],
            trigrams=ngrams[1],
            members=2,
        )
        counted = sum(budget.parameters(config, config.vocab_size).values()) * config.members
        assert counted == count_parameters(build(config)), config


def test_the_repository_params_and_every_preset_fit_the_default_budget() -> None:
    """What the README measures must run: IMDB's train split at each preset's own sizes."""
    for name in presets.PRESETS:
        chosen = presets.apply(params.load(REPO / "params.yaml"), name)
        vocab_size = chosen.tokenize.max_features + 2
        budget.check_train(chosen, vocab_size, (IMDB_TRAIN_ROWS, chosen.pad.maxlen))
        costs = budget.train_costs(chosen, vocab_size, IMDB_TRAIN_ROWS, chosen.pad.maxlen)
        assert 0 < sum(cost.bytes for cost in costs) < params.BaseParams().memory_budget_gb * 1e9
        padded = pad.padded_bytes([IMDB_TRAIN_ROWS, IMDB_TRAIN_ROWS], chosen.pad.maxlen)
        budget.check(
            "pad", [budget.Cost("the padded ids", padded, ())], chosen.base.memory_budget_gb
        )


@pytest.mark.parametrize(
    ("model", "named"),
    [
        ({"bigrams": 10**9}, r"the bigram embeddings, set by train\.model\.bigrams: 1000000000"),
        ({"members": 1000}, r"set by train\.model\.members: 1000, "),
        ({"hidden_dim": 10**6}, r"the recurrent and dense layers, set by train\.model\.hidden_dim"),
    ],
)
def test_a_model_too_large_is_refused_by_its_keys_before_anything_is_allocated(
    model: dict, named: str
) -> None:
    chosen = params.parse({"train": {"model": model}})
    tracemalloc.start()
    with pytest.raises(UserError, match=named) as info:
        budget.check_train(chosen, 10_002, (IMDB_TRAIN_ROWS, 150))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    message = str(info.value)
    assert "\n" not in message
    assert "over base.memory_budget_gb: 8 (default 8)" in message
    assert "raise base.memory_budget_gb" in message


def test_the_budget_param_moves_the_limit() -> None:
    chosen = params.parse({"base": {"memory_budget_gb": 0.01}})
    with pytest.raises(UserError, match=r"over base\.memory_budget_gb: 0\.01 \(default 8\)"):
        budget.check_train(chosen, 10_002, (IMDB_TRAIN_ROWS, 150))
    roomy = params.parse(
        {"base": {"memory_budget_gb": 10_000}, "train": {"model": {"members": 1000}}}
    )
    budget.check_train(roomy, 10_002, (IMDB_TRAIN_ROWS, 150))


def test_long_rows_name_the_padding_length() -> None:
    chosen = params.parse({"pad": {"maxlen": 10**6}, "train": {"model": {"bigrams": 10}}})
    with pytest.raises(UserError, match=r"pad\.maxlen: 1000000"):
        budget.check_train(chosen, 10_002, (IMDB_TRAIN_ROWS, 10**6))


def test_the_budget_and_the_pad_stage_do_not_import_torch() -> None:
    """The estimates cannot allocate a tensor, and the pad stage starts without torch's import."""
    code = "import sys, rnn_sentiment.stages.pad; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_refit_branch_counts_every_review_once_more_in_int64() -> None:
    def padded(**train) -> int:
        chosen = params.parse({"train": train})
        costs = budget.train_costs(chosen, 10_002, IMDB_TRAIN_ROWS, 400)
        return next(cost.bytes for cost in costs if cost.what == "the padded reviews")

    branch = {"model": {"nb_features": 1000}}
    assert padded(**branch, refit_branch=True) - padded(**branch) == IMDB_TRAIN_ROWS * 400 * 8
    assert padded(refit_branch=True) == padded()  # nothing to refit without a branch
