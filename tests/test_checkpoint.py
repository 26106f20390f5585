"""Checkpoints that this project did not write, or a tokenizer that is not the model's, are refused
in one line naming the file and the fix, from the Python API and the command line alike."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from rnn_sentiment import checkpoint, cli, text
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import ModelConfig, SentimentRNN
from rnn_sentiment.params import PadParams, TokenizeParams
from rnn_sentiment.serving import Predictor
from tests.conftest import synthetic_review


def write_model_dir(directory: Path, vocab_size: int | None = None) -> Path:
    """A model folder as the train stage writes it, with an untrained model of `vocab_size` ids
    (the tokenizer's own count when None)."""
    tokenizer = text.fit([synthetic_review(label, 0) for label in (0, 1)], TokenizeParams())
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / checkpoint.TOKENIZER_FILE))
    config = ModelConfig(vocab_size=vocab_size or tokenizer.get_vocab_size(), embedding_dim=4)
    checkpoint.save(directory / checkpoint.MODEL_FILE, SentimentRNN(config), PadParams(maxlen=8))
    return directory


class RunsCode:
    """Unpickling this creates `marker`: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def predict_error(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What `rnn-sentiment predict --model model_dir` prints, given that it exits with 2."""
    assert cli.main(["predict", "--model", str(model_dir), "A fine film."]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.filterwarnings("error")  # a warning would be a second line
@pytest.mark.parametrize("as_torch_save", [True, False])
def test_a_pickle_that_would_run_code_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_torch_save: bool
) -> None:
    model_dir = write_model_dir(tmp_path / "models")
    model = model_dir / checkpoint.MODEL_FILE
    marker = tmp_path / "code-ran"
    if as_torch_save:
        torch.save({"model_config": {}, "state_dict": RunsCode(marker)}, model)
    else:
        model.write_bytes(pickle.dumps(RunsCode(marker)))

    with pytest.raises(UserError, match=r"only load checkpoints this project wrote$") as refused:
        checkpoint.load(model)
    err = predict_error(model_dir, capsys)

    assert str(refused.value).startswith(f"refused to load {model}: ")
    assert "retrain" in str(refused.value) and "weights_only" not in str(refused.value)
    assert err == f"error: {refused.value}\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint", pickle.dumps([1, 2]), pickle.dumps({"model_config": {}})],
    ids=["empty", "text", "a list", "no state"],
)
@pytest.mark.filterwarnings("error")
def test_a_file_that_is_no_checkpoint_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    model_dir = write_model_dir(tmp_path / "models")
    model = model_dir / checkpoint.MODEL_FILE
    model.write_bytes(content)
    err = predict_error(model_dir, capsys)
    assert f" {model}" in err and "retrain" in err and "`dvc repro`" in err


def test_a_truncated_checkpoint_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = write_model_dir(tmp_path / "models")
    model = model_dir / checkpoint.MODEL_FILE
    model.write_bytes(model.read_bytes()[:-100])
    assert predict_error(model_dir, capsys).startswith(f"error: {model} is not a checkpoint")


def test_a_corrupt_tokenizer_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = write_model_dir(tmp_path / "models")
    tokenizer = model_dir / checkpoint.TOKENIZER_FILE
    tokenizer.write_text(tokenizer.read_text(encoding="utf-8")[:200], encoding="utf-8")
    with pytest.raises(UserError, match=r"is not a tokenizer the tokenize stage wrote \(.*\): run"):
        text.load(tokenizer)
    err = predict_error(model_dir, capsys)
    assert err.startswith(f"error: {tokenizer} is not a tokenizer") and "dvc repro" in err


@pytest.mark.parametrize("offset", [-3, 3], ids=["smaller model", "larger model"])
def test_a_tokenizer_that_is_not_the_models_is_refused_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], offset: int
) -> None:
    vocab_size = text.load(write_model_dir(tmp_path / "probe") / "tokenizer.json").get_vocab_size()
    model_dir = write_model_dir(tmp_path / "models", vocab_size + offset)
    with pytest.raises(UserError) as refused:
        Predictor.from_dir(model_dir).predict_proba(["zzz " + synthetic_review(1, 0)])
    message = str(refused.value)
    assert message.startswith(f"tokenizer {model_dir / checkpoint.TOKENIZER_FILE} has {vocab_size}")
    assert (
        f"model {model_dir / checkpoint.MODEL_FILE} was trained on {vocab_size + offset}" in message
    )
    assert predict_error(model_dir, capsys) == f"error: {message}\n"


def test_the_same_model_saves_to_the_same_bytes(tmp_path: Path) -> None:
    """DVC keys outputs by content: retraining with the same params and seed must give the
    checkpoint the hash it had, whatever temporary file it was written through."""
    torch.manual_seed(0)
    model = SentimentRNN(ModelConfig(vocab_size=10, embedding_dim=4))
    first, second = tmp_path / "a" / checkpoint.MODEL_FILE, tmp_path / "b" / checkpoint.MODEL_FILE
    for path in (first, second):
        checkpoint.save(path, model, PadParams(maxlen=8))
    assert first.read_bytes() == second.read_bytes()
