"""Serving end to end: one tiny trained model, logged, evaluated at a threshold other than 0.5 and
registered in MLflow, gives the same probability and the same label for a review through the
Python API, the pyfunc (by every kind of URI), the CLI and MLflow's HTTP server; bad reviews get
a clear error and the server keeps answering."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from rnn_sentiment import checkpoint, cli, registry, serving, tracking
from rnn_sentiment.errors import UserError
from rnn_sentiment.models import ModelConfig, build
from rnn_sentiment.params import EvaluateParams, ModelParams, PadParams, Params, TrainParams
from rnn_sentiment.serving import FLOAT32_BELOW, Predictor, serving_dtype, write_threshold
from rnn_sentiment.stages import train
from tests.conftest import synthetic_padded
from tests.mlflow_server import invoke, mlflow_server
from tests.thresholds import flipping_threshold, labels

NAME = "tiny-sentiment"
TINY = TrainParams(
    model=ModelParams(embedding_dim=8, hidden_dim=8), epochs=2, batch_size=8, lr=0.01
)
REVIEWS = [
    "Great film, wonderful and moving. Loved it!",
    "Awful and boring: a dull, terrible waste of two hours.",
    "The plot, the music and the ending were superb.<br /><br />Yes!",
    "Le film était magnifique 😀🎬 这部电影很好",
    "<br />",  # nothing left once HTML is stripped: scored as an empty sequence, not refused
]
HUGE = "the story was brilliant and the acting superb " * 22_000  # about 1 MB


@dataclass(frozen=True)
class Trained:
    """A model dir, its MLflow run, its logged model and its registration, in one store."""

    store: str
    model_dir: Path
    run_id: str
    model_uri: str  # models:/m-..., as log_model returns it
    version: int
    threshold: float  # what the model was evaluated with: not 0.5


@contextlib.contextmanager
def using_store(uri: str) -> Iterator[None]:
    """Point MLflow at `uri` for the block, then forget it: `tracking.configure` also sets
    MLflow's process-wide URIs, which would outlive the environment variables."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train through the real tokenize/pad/train stage functions, log, register: once."""
    root = tmp_path_factory.mktemp("serving")
    store = f"sqlite:///{root / 'mlflow.db'}"
    arrays, tokenizer = synthetic_padded(per_class=24, maxlen=24)
    tokenizer.save(str(root / "tokenizer.json"))
    params = Params(pad=PadParams(maxlen=24), train=TINY)
    result = train.run(TINY, 0, arrays, tokenizer, torch.device("cpu"))
    model_dir = root / "models"
    with using_store(store):
        with tracking.training_run(train.tracked_params(params)) as run_id:
            tracking.log_metrics(result.metrics)
            train.write_model_dir(model_dir, result.model, params, root / "tokenizer.json")
            model_uri = tracking.log_model(model_dir, train.EXAMPLE_REVIEWS)
        # What the evaluate stage does, at a threshold that labels some review otherwise than 0.5.
        probabilities = Predictor.from_dir(model_dir, threshold=0.5).predict_proba(REVIEWS)
        threshold = flipping_threshold(probabilities)
        write_threshold(model_dir / checkpoint.THRESHOLD_FILE, threshold)
        tracking.record_threshold(model_uri, model_dir / checkpoint.THRESHOLD_FILE)
        evaluation = EvaluateParams(threshold=threshold, registered_model_name=NAME)
        registered = registry.record(run_id, model_uri, {"accuracy": 0.5}, evaluation)
    return Trained(store, model_dir, run_id, model_uri, registered.version, threshold)


@pytest.fixture
def store(trained: Trained, mlflow_store: str) -> Iterator[str]:
    """The trained model's store, in place of conftest's per-test one (hence `mlflow_store`)."""
    with using_store(trained.store):
        yield trained.store


@pytest.fixture(scope="module")
def expected(trained: Trained) -> np.ndarray:
    """What the Python API says: the reference every other way in must match."""
    probabilities = Predictor.from_dir(trained.model_dir).predict_proba(REVIEWS)
    assert np.ptp(probabilities) > 1e-3, "a model that says the same for all proves nothing"
    return probabilities


@pytest.fixture(scope="module")
def server(trained: Trained) -> Iterator[str]:
    with using_store(trained.store), mlflow_server(f"models:/{NAME}@champion") as url:
        yield url


def test_python_api_scores_odd_but_real_text(trained: Trained, expected: np.ndarray) -> None:
    assert ((expected > 0) & (expected < 1)).all()
    predictor = Predictor.from_dir(trained.model_dir)
    assert 0 < predictor.predict_proba([HUGE])[0] < 1
    np.testing.assert_array_equal(predictor.predict_proba(np.array(REVIEWS)), expected)
    assert [p.label for p in predictor.predict(REVIEWS)] == labels(expected, trained.threshold)


@pytest.mark.parametrize(
    ("reviews", "message"),
    [
        (["fine", None], "review 2 is null"),
        (["fine", "", "also fine"], "review 2 is empty"),
        ([" \t\n"], "review 1 is empty"),
        (["fine", 3], "review 2 is int, not text"),
        ("one string", "got a single string"),
    ],
)
def test_python_api_names_the_bad_review(trained: Trained, reviews: list, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Predictor.from_dir(trained.model_dir).predict_proba(reviews)


@pytest.mark.parametrize("kind", ["alias", "version", "run", "logged model"])
def test_pyfunc_matches_python_api(
    trained: Trained, store: str, expected: np.ndarray, kind: str
) -> None:
    uri = {
        "alias": f"models:/{NAME}@champion",
        "version": f"models:/{NAME}/{trained.version}",
        "run": f"runs:/{trained.run_id}/{tracking.MODEL_NAME}",
        "logged model": trained.model_uri,
    }[kind]
    predictions = mlflow.pyfunc.load_model(uri).predict(REVIEWS)
    np.testing.assert_allclose(predictions["probability"], expected, rtol=0, atol=1e-6)
    assert list(predictions["label"]) == labels(expected, trained.threshold)
    assert labels(expected, trained.threshold) != labels(expected, 0.5)


def test_bfloat16_moves_probabilities_little_and_leaves_the_callers_model_alone(
    trained: Trained,
) -> None:
    exact = Predictor.from_dir(trained.model_dir, precision="float32")
    fast = Predictor(exact.model, exact.tokenizer, exact.pad, precision="bfloat16")
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    assert next(exact.model.parameters()).dtype == torch.float32
    np.testing.assert_allclose(
        fast.predict_proba(REVIEWS), exact.predict_proba(REVIEWS), rtol=0, atol=0.01
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_int8_quantizes_the_layers_and_moves_probabilities_little(
    trained: Trained, cell: str
) -> None:
    loaded = Predictor.from_dir(trained.model_dir, precision="float32")
    config = ModelConfig(
        vocab_size=loaded.tokenizer.get_vocab_size(), hidden_dim=16, cell=cell, head_layers=(8,)
    )
    torch.manual_seed(0)
    model = build(config).eval()
    exact = Predictor(model, loaded.tokenizer, loaded.pad, precision="float32")
    small = Predictor(model, loaded.tokenizer, loaded.pad, precision="int8")

    def quantized_layers(network: torch.nn.Module) -> set[str]:
        return {
            type(module).__name__
            for module in network.modules()
            if "quantized.dynamic" in type(module).__module__
        }

    assert {cell.upper(), "Linear"} <= quantized_layers(small.model)
    assert not quantized_layers(model)  # the caller's model is left as it was
    quantized, reference = small.predict_proba(REVIEWS), exact.predict_proba(REVIEWS)
    assert not np.array_equal(quantized, reference)  # int8 arithmetic did run
    np.testing.assert_allclose(quantized, reference, rtol=0, atol=0.02)


def test_int8_is_refused_on_a_gpu() -> None:
    with pytest.raises(UserError, match="int8 runs on a CPU only"):
        serving_dtype("int8", torch.device("cuda"))


@pytest.mark.parametrize("cell", ["gru", "rnn", "lstm"])
def test_auto_runs_small_calls_of_a_stepwise_cell_in_float32(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, cell: str
) -> None:
    """On a CPU with native bfloat16, `auto` runs a call of fewer than FLOAT32_BELOW[cell]
    reviews in float32, where that is faster (GRU, RNN), and larger ones in bfloat16."""
    monkeypatch.setattr(serving, "hardware_bfloat16", lambda: True)
    loaded = Predictor.from_dir(trained.model_dir, precision="float32")
    config = ModelConfig(vocab_size=loaded.tokenizer.get_vocab_size(), hidden_dim=8, cell=cell)
    torch.manual_seed(0)
    model = build(config).eval()
    exact, fast, auto = (
        Predictor(model, loaded.tokenizer, loaded.pad, precision=precision)
        for precision in ("float32", "bfloat16", "auto")
    )
    reviews = REVIEWS * 3
    assert not np.array_equal(exact.predict_proba(reviews[:1]), fast.predict_proba(reviews[:1]))
    below = FLOAT32_BELOW[cell]
    for count in sorted({1, max(below - 1, 1), max(below, 1)}):
        expected = (exact if count < below else fast).predict_proba(reviews[:count])
        np.testing.assert_array_equal(auto.predict_proba(reviews[:count]), expected)
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize(("hardware", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_runs_bfloat16_only_where_the_cpu_computes_it_in_hardware(
    monkeypatch: pytest.MonkeyPatch, hardware: bool, expected: torch.dtype
) -> None:
    """An AVX512 CPU without AVX512-BF16 or AMX has oneDNN's bfloat16 kernels, emulated: `auto`
    keeps float32 there."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: hardware)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert serving_dtype("auto", torch.device("cpu")) == expected


def test_auto_precision_keeps_float32_on_a_gpu_and_an_unknown_one_is_refused(
    trained: Trained,
) -> None:
    assert serving_dtype("auto", torch.device("cuda")) == torch.float32
    with pytest.raises(UserError, match="unknown precision 'fp8'; choose one of auto, float32"):
        Predictor.from_dir(trained.model_dir, precision="fp8")


def test_pyfunc_and_cli_take_a_precision(
    trained: Trained, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exact = Predictor.from_dir(trained.model_dir, precision="float32").predict_proba(REVIEWS)
    model = tracking.load_pyfunc(f"models:/{NAME}@champion", {"precision": "float32"})
    np.testing.assert_allclose(model.predict(REVIEWS)["probability"], exact, rtol=0, atol=1e-6)
    for source in (f"models:/{NAME}@champion", str(trained.model_dir)):
        assert cli.main(["predict", "--precision", "float32", "--model", source, *REVIEWS]) == 0
        printed = [float(line.split("\t")[1]) for line in capsys.readouterr().out.splitlines()]
        np.testing.assert_allclose(printed, exact, rtol=0, atol=1e-6)


def test_pyfunc_refuses_null_with_the_reviews_position(store: str) -> None:
    model = tracking.load_pyfunc(f"models:/{NAME}@champion")
    with pytest.raises(MlflowException, match="review 2 is null"):
        model.predict(["fine", None])


def test_cli_reports_an_unknown_alias_in_one_line(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["predict", "--model", f"models:/{NAME}@gone", "Fine."]) == 2
    error = f"error: cannot load model models:/{NAME}@gone: Registered model alias gone not found"
    assert capsys.readouterr().err.splitlines() == [error + "."]


@pytest.mark.parametrize("kind", ["folder", "registry", "MLmodel folder"])
def test_cli_matches_python_api(
    trained: Trained,
    store: str,
    expected: np.ndarray,
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = {
        "folder": lambda: str(trained.model_dir),
        "registry": lambda: f"models:/{NAME}@champion",
        "MLmodel folder": lambda: mlflow.artifacts.download_artifacts(
            trained.model_uri, dst_path=str(tmp_path)
        ),
    }[kind]()
    assert cli.main(["predict", "--model", model, *REVIEWS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(REVIEWS)
    probabilities = [float(line.split("\t")[1]) for line in lines]
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert [line.split("\t")[0] for line in lines] == labels(expected, trained.threshold)


def test_server_matches_python_api(server: str, trained: Trained, expected: np.ndarray) -> None:
    status, body = invoke(server, {"inputs": REVIEWS})
    assert status == 200, body
    probabilities = [row["probability"] for row in body["predictions"]]
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert [row["label"] for row in body["predictions"]] == labels(expected, trained.threshold)
    split = {"columns": ["text"], "data": [[review] for review in REVIEWS]}
    status, body = invoke(server, {"dataframe_split": split})
    assert status == 200, body
    assert [row["probability"] for row in body["predictions"]] == probabilities


def test_server_scores_a_1mb_review_like_the_python_api(trained: Trained, server: str) -> None:
    status, body = invoke(server, {"inputs": [HUGE]})
    assert status == 200, body
    reference = Predictor.from_dir(trained.model_dir).predict_proba([HUGE])[0]
    assert body["predictions"][0]["probability"] == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": [""]}, "review 1 is empty"),
        ({"inputs": ["fine", "   \n\t"]}, "review 2 is empty"),
        ({"inputs": ["fine", None]}, "review 2 is null"),
        ({"inputs": [None]}, "review 1 is null"),
        ({"inputs": [42]}, "review 1 is int, not text"),
        ({"inputs": ["fine", 2.5]}, "review 2 is float, not text"),
        ({"inputs": [True]}, "review 1 is bool, not text"),
        (
            {"dataframe_split": {"columns": ["text"], "data": [["fine"], [None]]}},
            "review 2 is null",
        ),
        ({"inputs": []}, "0 inputs"),
    ],
)
def test_server_answers_a_bad_review_with_400_and_carries_on(
    server: str, payload: dict, message: str
) -> None:
    status, body = invoke(server, payload)
    assert status == 400, body
    assert message in body["message"]
    status, body = invoke(server, {"inputs": ["Loved it."]})
    assert status == 200, body
    assert len(body["predictions"]) == 1
