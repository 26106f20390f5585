from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from rnn_sentiment import checkpoint, tracking, training
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import ModelParams, TrainParams
from rnn_sentiment.stages import train
from rnn_sentiment.training import Split, native_bfloat16, predict_logits
from tests.conftest import synthetic_padded
from tests.mlflow_server import free_port
from tests.stages.tiny_stages import ARCHIVE, train_argv, write_inputs

TINY = TrainParams(
    model=ModelParams(cell="gru", embedding_dim=16, hidden_dim=16, pooling="mean_max"),
    lr=0.01,
    batch_size=16,
    epochs=6,
    patience=3,
)


@pytest.fixture(scope="module")
def data():
    arrays, tokenizer = synthetic_padded(per_class=120)
    held_out, _ = synthetic_padded(per_class=60, offset=500)
    return arrays, tokenizer, held_out


def timeless(result: train.TrainResult) -> dict[str, float]:
    """A training's metrics but its wall time, which no two runs share."""
    return {k: v for k, v in result.metrics.items() if k != "train_seconds"}


def test_learns_a_separable_task(data) -> None:
    arrays, tokenizer, _ = data
    result = train.run(TINY, 0, arrays, tokenizer, torch.device("cpu"))
    assert result.metrics["best_val_accuracy"] >= 0.95
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert 1 <= result.best_epoch <= len(result.history)


def test_same_seed_same_metrics(data) -> None:
    arrays, tokenizer, _ = data
    params = TINY.model_copy(update={"epochs": 2})
    first = train.run(params, 7, arrays, tokenizer, torch.device("cpu"))
    second = train.run(params, 7, arrays, tokenizer, torch.device("cpu"))
    third = train.run(params, 8, arrays, tokenizer, torch.device("cpu"))
    assert timeless(first) == timeless(second)
    assert first.history[0].train_loss != third.history[0].train_loss


def test_early_stopping_keeps_the_best_epoch(data) -> None:
    arrays, tokenizer, _ = data
    params = TINY.model_copy(update={"epochs": 30, "patience": 1, "lr": 0.05})
    result = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    best = min(result.history, key=lambda stats: stats.val_loss)
    assert result.best_epoch == best.epoch
    assert len(result.history) <= result.best_epoch + 1


def test_tutorial_architecture_trains(data) -> None:
    """The tutorial's SimpleRNN (vanilla cell, last step) learns once loss and padding are fixed."""
    arrays, tokenizer, held_out = data
    params = TINY.model_copy(
        update={
            "model": ModelParams(cell="rnn", pooling="last", embedding_dim=16, hidden_dim=32),
            "epochs": 8,
        }
    )
    result = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    test = Split.from_arrays(held_out["ids"], held_out["labels"])
    accuracy = (
        (predict_logits(result.model, test.ids, 64, torch.device("cpu")) > 0)
        == (test.labels.numpy() > 0.5)
    ).mean()
    assert accuracy >= 0.9


def test_validation_split_is_stratified_and_seeded() -> None:
    ids = np.arange(200, dtype=np.int32).reshape(100, 2) + 2
    labels = np.array([0] * 70 + [1] * 30, dtype=np.int8)
    alone = np.arange(100)  # every review its own movie
    train_a, val_a, digest_a = train.split_validation(ids, labels, alone, 0.2, seed=1)
    _, val_b, digest_b = train.split_validation(ids, labels, alone, 0.2, seed=1)
    _, val_c, digest_c = train.split_validation(ids, labels, alone, 0.2, seed=2)
    assert len(val_a) == 20 and int(val_a.labels.sum()) == 6
    assert torch.equal(val_a.ids, val_b.ids) and digest_a == digest_b
    assert not torch.equal(val_a.ids, val_c.ids) and digest_a != digest_c
    assert len(train_a) == 80


def test_the_split_digest_names_the_reviews_not_their_tokens() -> None:
    """Another tokenizer or padding keeps the validation reviews, and their digest; another
    fraction, or other movies in the train split, change both."""
    ids = np.arange(200, dtype=np.int32).reshape(100, 2) + 2
    labels = np.tile([0, 1], 50).astype(np.int8)
    movies = np.arange(100) // 2
    *_, digest = train.split_validation(ids, labels, movies, 0.2, seed=1)
    *_, retokenized = train.split_validation(ids[:, :1] + 7, labels, movies, 0.2, seed=1)
    *_, fraction = train.split_validation(ids, labels, movies, 0.25, seed=1)
    *_, regrouped = train.split_validation(ids, labels, (movies + 1) % 50, 0.2, seed=1)
    assert retokenized == digest
    assert len({digest, fraction, regrouped}) == 3


def test_validation_holds_out_whole_movies() -> None:
    ids = np.arange(400, dtype=np.int32).reshape(200, 2) + 2  # row r holds ids 2r+2, 2r+3
    labels = np.tile([0, 1], 100).astype(np.int8)
    movies = np.arange(200) // 5  # 40 movies of 5 reviews, both labels in each
    train_part, val, _ = train.split_validation(ids, labels, movies, 0.1, seed=0)
    seen = {int(row[0] - 2) // 2 // 5 for row in train_part.ids}
    held_out = {int(row[0] - 2) // 2 // 5 for row in val.ids}
    assert not seen & held_out and len(seen | held_out) == 40
    assert len(val) == 20 and 8 <= int(val.labels.sum()) <= 12


def test_one_label_only_is_a_clear_error() -> None:
    ids = np.full((10, 3), 2, dtype=np.int32)
    with pytest.raises(UserError, match="at least 2 reviews of each label"):
        train.split_validation(ids, np.ones(10, dtype=np.int8), np.arange(10), 0.2, seed=0)


def test_too_few_movies_is_a_clear_error() -> None:
    ids = np.full((20, 3), 2, dtype=np.int32)
    labels = np.tile([0, 1], 10).astype(np.int8)
    with pytest.raises(UserError, match=r"holds 3 movies, too few to hold out 1/5.*val_fraction"):
        train.split_validation(ids, labels, np.arange(20) % 3, 0.2, seed=0)


def test_ngrams_an_ensemble_and_a_linear_schedule_train_together(data) -> None:
    arrays, tokenizer, held_out = data
    update = {"bigrams": 50, "trigrams": 20, "members": 2, "bidirectional": True}
    model = TINY.model.model_copy(update=update)
    params = TINY.model_copy(update={"model": model, "epochs": 3, "lr_schedule": "linear"})
    result = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    members = result.model.members
    assert len(members) == 2
    vocab_size = tokenizer.get_vocab_size()
    assert (members[0].ngrams["bigrams"].keys < vocab_size**2).sum() == 50  # pairs of the rows
    assert (members[1].ngrams["trigrams"].keys < vocab_size**3).sum() == 20
    test = Split.from_arrays(held_out["ids"], held_out["labels"])
    logits = predict_logits(result.model, test.ids, 64, torch.device("cpu"))
    assert ((logits > 0) == (test.labels.numpy() > 0.5)).mean() >= 0.9


def test_a_refit_branch_learns_every_review_and_leaves_the_rest_as_validation_chose(data) -> None:
    arrays, tokenizer, held_out = data
    model = TINY.model.model_copy(update={"nb_features": 400, "nb_negation": True})
    params = TINY.model_copy(update={"model": model, "epochs": 3})
    refit = params.model_copy(update={"refit_branch": True})
    kept = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    first = train.run(refit, 0, arrays, tokenizer, torch.device("cpu"))
    second = train.run(refit, 0, arrays, tokenizer, torch.device("cpu"))

    assert timeless(first) == timeless(kept)
    before, after = kept.model.state_dict(), first.model.state_dict()
    branch = {key for key in after if key.startswith("naive_bayes.")}
    assert all(torch.equal(before[key], after[key]) for key in after.keys() - branch)
    assert not torch.equal(before["naive_bayes.ratios"], after["naive_bayes.ratios"])
    assert not torch.equal(before["naive_bayes.weight"], after["naive_bayes.weight"])
    assert all(torch.equal(after[key], second.model.state_dict()[key]) for key in branch)
    # counted on the train and validation rows together, as a branch given all of them counts
    everything = Split.from_arrays(arrays["ids"], arrays["labels"])
    counted = copy.deepcopy(kept.model.naive_bayes)
    counted.learn(everything.ids, everything.labels, counted.roles)
    assert torch.equal(counted.keys, first.model.naive_bayes.keys)
    assert torch.equal(counted.ratios, first.model.naive_bayes.ratios)
    test = Split.from_arrays(held_out["ids"], held_out["labels"])
    logits = predict_logits(first.model, test.ids, 64, torch.device("cpu"))
    assert ((logits > 0) == (test.labels.numpy() > 0.5)).mean() >= 0.9


@pytest.mark.skipif(
    not native_bfloat16(torch.device("cpu")), reason="no bfloat16 kernels (AVX512) here"
)
def test_mixed_precision_learns_and_repeats(data) -> None:
    arrays, tokenizer, _ = data
    model = TINY.model.model_copy(update={"cell": "lstm"})
    params = TINY.model_copy(update={"model": model, "epochs": 4, "precision": "bfloat16"})
    first = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    second = train.run(params, 0, arrays, tokenizer, torch.device("cpu"))
    assert first.metrics["best_val_accuracy"] >= 0.9
    assert first.history[0].train_loss == second.history[0].train_loss
    assert first.history[-1].val_loss == second.history[-1].val_loss


def runs() -> list[mlflow.entities.Run]:
    tracking.configure()
    return mlflow.search_runs(experiment_names=[tracking.EXPERIMENT], output_format="list")


def test_main_records_the_data_the_params_and_a_name_a_person_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    root = write_inputs(tmp_path)
    assert train.main(train_argv(root)) == 0

    (run,) = runs()
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("gru-h4-e1-")
    arrays = np.load(root / "padded/train.npz")
    *_, val_split = train.split_validation(
        arrays["ids"], arrays["labels"], arrays["groups"], 0.1, seed=42
    )
    assert run.data.tags[tracking.VAL_SPLIT_TAG] == val_split
    params = run.data.params
    assert (params["download.url"], params["download.sha256"]) == (
        ARCHIVE["url"],
        ARCHIVE["sha256"],
    )
    assert not any(key.startswith("evaluate.") for key in params)  # evaluate records its own
    assert run.data.metrics["best_val_accuracy"] >= 0
    (data,) = run.inputs.dataset_inputs
    md5 = hashlib.md5((root / "padded/train.npz").read_bytes()).hexdigest()
    assert (data.tags[0].value, data.dataset.digest) == ("training", md5)
    assert json.loads(data.dataset.profile)["archive_sha256"] == ARCHIVE["sha256"]
    written = json.loads((root / "models" / checkpoint.RUN_FILE).read_text())
    assert written["run_id"] == run.info.run_id
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "embedding")}
    assert logged == {"embedding/neighbours.txt", "embedding/map.png"}


@pytest.mark.parametrize(
    ("changes", "groups", "message"),
    [
        (
            {"train.model.input_layers": [0]},
            None,
            "train.model.input_layers.0: Input should be greater",
        ),
        ({}, np.zeros(40, dtype=np.int32), "holds 1 movies, too few to hold out"),
    ],
    ids=["model config", "validation split"],
)
def test_a_bad_config_or_split_fails_before_any_run_opens(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict,
    groups: np.ndarray | None,
    message: str,
) -> None:
    root = write_inputs(tmp_path, groups=groups, **changes)
    assert train.main(train_argv(root)) == 2
    assert message in capsys.readouterr().err
    assert runs() == []
    assert not (root / "models").exists()


def test_bfloat16_where_it_is_emulated_is_refused_in_one_line_before_any_run_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without native bfloat16, oneDNN has no bfloat16 LSTM: the training would fail at its first
    batch with a RuntimeError, after the MLflow run had opened."""
    monkeypatch.setattr(training, "native_bfloat16", lambda device: False)
    root = write_inputs(tmp_path, **{"train.precision": "bfloat16", "train.model.cell": "lstm"})
    assert train.main(train_argv(root)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.precision: bfloat16 needs bfloat16 kernels (a CPU with")
    assert err.endswith("which this cpu lacks: set train.precision: float32\n")
    assert err.count("\n") == 1
    assert runs() == []
    assert not (root / "models").exists()
    with pytest.raises(UserError, match=r"set train\.precision: float32$"):  # `run`, as a library
        train.run(
            TINY.model_copy(update={"precision": "bfloat16"}),
            0,
            *synthetic_padded(per_class=20),
            torch.device("cpu"),
        )


def test_an_unreachable_tracking_server_fails_at_once_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    root = write_inputs(tmp_path)
    start = time.monotonic()
    assert train.main(train_argv(root)) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith(f"error: no MLflow tracking server answers at {uri} (")
    assert err.count("\n") == 1


def test_token_ids_beyond_the_tokenizer_are_refused_in_one_line(tmp_path, capsys) -> None:
    from rnn_sentiment import text
    from rnn_sentiment.files import read_npz, write_npz

    root = write_inputs(tmp_path)
    vocab_size = text.load(str(root / "tokenizer.json")).get_vocab_size()
    arrays = read_npz(root / "padded" / "train.npz")
    arrays["ids"][3, 0] = vocab_size + 7  # as if padded with a larger tokenizer's ids
    write_npz(root / "padded" / "train.npz", **arrays)

    assert train.main(train_argv(root)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {root / 'padded' / 'train.npz'} holds token ids up to {vocab_size + 7} but "
        f"tokenizer {root / 'tokenizer.json'} has {vocab_size}"
    )
    assert "dvc repro" in err and err.count("\n") == 1
    assert not (root / "models").exists()


def test_ctrl_c_while_training_marks_the_mlflow_run_failed(tmp_path, capsys, monkeypatch) -> None:
    import mlflow

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "fit_prepared", interrupted)
    root = write_inputs(tmp_path)

    try:
        code = train.main(train_argv(root))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a KeyboardInterrupt")
    assert code == 130
    assert capsys.readouterr().err.endswith("interrupted\n")  # after MLflow's own log lines
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [run.info.status for run in runs] == ["FAILED"]
    assert not (root / "models").exists()
