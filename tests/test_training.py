from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rnn_sentiment import training
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import ModelConfig, build
from rnn_sentiment.params import TrainParams, parse

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("dtype", "expected"), [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)]
)
def test_precision_runs_matrix_products_in_the_dtype_named(dtype, expected) -> None:
    layer = nn.Linear(4, 3)
    with training.precision(dtype, CPU):
        out = layer(torch.ones(2, 4))
    assert out.dtype == expected
    assert layer.weight.dtype == torch.float32  # mixed precision: weights stay float32


def test_adam_runs_fused_and_sgd_is_left_alone() -> None:
    model = nn.Linear(4, 1)
    assert training.make_optimizer(model, TrainParams()).defaults["fused"] is True
    assert training.make_optimizer(model, TrainParams(optimizer="adamw")).defaults["fused"]
    sgd = training.make_optimizer(model, TrainParams(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD)


@pytest.mark.parametrize(("monitor", "best"), [("val_loss", 2), ("val_accuracy", 3)])
def test_the_monitored_value_picks_the_epoch_kept(monkeypatch, monitor: str, best: int) -> None:
    # Validation (loss, accuracy) per epoch: loss is lowest at epoch 2, accuracy highest at 3.
    scripted = iter([(0.5, 0.80), (0.4, 0.85), (0.45, 0.90), (0.6, 0.70), (0.7, 0.6)])
    monkeypatch.setattr(training, "validate", lambda *args: next(scripted))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 1), nn.Flatten(0))  # one logit per one-token row
    data = training.Split(torch.arange(2, 10).unsqueeze(1), torch.ones(8))
    weights = []
    params = TrainParams(epochs=5, patience=2, batch_size=4, monitor=monitor)
    history, best_epoch = training.fit(
        model, data, data, params, 0, CPU, lambda stats: weights.append(model[0].weight.clone())
    )
    assert best_epoch == best
    assert len(history) == best + 2  # stopped after `patience` epochs without improvement
    torch.testing.assert_close(model[0].weight, weights[best - 1])


def test_an_unknown_precision_is_refused_by_name() -> None:
    with pytest.raises(
        UserError, match=r"train\.precision: Input should be 'float32' or 'bfloat16'"
    ):
        parse({"train": {"precision": "float16"}})


def tiny_network(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    architecture = {"embedding_dim": 4, "hidden_dim": 4, "cell": "gru", **overrides}
    return build(ModelConfig(vocab_size=20, **architecture))


def tiny_split(rows: int = 32) -> training.Split:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 20, (rows, 6), generator=generator)
    return training.Split(ids, (ids[:, 0] > 10).float())


@pytest.mark.parametrize(
    ("update", "fixes"),
    [
        ({}, r"lower train\.lr$"),
        (
            {"clip_grad_norm": None},
            r"lower train\.lr, or set train\.clip_grad_norm \(e\.g\. 1\.0\)$",
        ),
        ({"precision": "bfloat16"}, r"lower train\.lr, or set train\.precision: float32$"),
    ],
)
def test_a_non_finite_training_loss_stops_at_its_batch(
    update: dict, fixes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A GRU trains in emulated bfloat16 too: let it, so the message is checked on every CPU.
    monkeypatch.setattr(training, "native_bfloat16", lambda device: True)
    model = tiny_network()
    with torch.no_grad():
        model.embedding.weight[2:] = float("inf")  # every word: every logit is NaN
    data = tiny_split()
    params = TrainParams(batch_size=8, **update)
    with pytest.raises(UserError, match=rf"training loss of epoch 1, batch 1 is nan: .*{fixes}"):
        training.fit(model, data, data, params, 0, CPU)


def test_a_diverging_learning_rate_stops_training_in_its_first_epoch() -> None:
    stats = []
    params = TrainParams(lr=1e38, batch_size=8, epochs=3)  # the first step overflows float32
    with pytest.raises(UserError, match=r"training loss of epoch 1, batch \d+ is (nan|inf)"):
        training.fit(tiny_network(), tiny_split(), tiny_split(), params, 0, CPU, stats.append)
    assert stats == []  # no epoch was reported, so none reaches MLflow or the curve


def test_a_non_finite_validation_loss_stops_training(monkeypatch) -> None:
    monkeypatch.setattr(training, "validate", lambda *args: (float("inf"), 0.5))
    params = TrainParams(batch_size=8, epochs=2, monitor="val_accuracy")
    with pytest.raises(UserError, match=r"validation loss of epoch 1 is inf: .*lower train\.lr"):
        training.fit(tiny_network(), tiny_split(), tiny_split(), params, 0, CPU)


def test_the_naive_bayes_blend_is_fitted_on_validation_rows() -> None:
    model = tiny_network(nb_features=200)
    data = tiny_split(rows=64)
    model.learn_ngrams(data.ids, data.labels)
    with torch.no_grad():  # the branch alone knows the labels, the network knows nothing
        model.naive_bayes.weight.fill_(1.0)
    assert model.blend.tolist() == [0.5, 0.5, 0.0]
    _, accuracy = training.validate(model, data, 16, torch.device("cpu"))
    assert model.blend[1] > max(abs(model.blend[0]), 0.5)
    members = training.predict_logits(model, data.ids, 16, torch.device("cpu"), members=True)
    assert members.shape == (2, len(data))
    blended = training.predict_logits(model, data.ids, 16, torch.device("cpu"))
    a, b, c = model.blend.tolist()
    np.testing.assert_allclose(blended, a * members[0] + b * members[1] + c, rtol=0, atol=1e-5)
    each = [((logits > 0) == (data.labels.numpy() > 0.5)).mean() for logits in members]
    assert ((blended > 0) == (data.labels.numpy() > 0.5)).mean() >= each[1] > each[0]
    assert accuracy == pytest.approx(((blended > 0) == (data.labels.numpy() > 0.5)).mean())


def test_a_model_without_the_branch_keeps_its_mean() -> None:
    model = tiny_network(members=2)
    before = copy.deepcopy(model.state_dict())
    training.validate(model, tiny_split(), 16, torch.device("cpu"))
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
