"""`rnn-sentiment predict`: reviews from arguments or files, predictions printed or written, and
every input mistake a one-line `error: ...` with exit code 2.

The model is an untrained one (seeded): these tests are about the command, not about accuracy;
tests/test_serving.py checks a trained model through every way in.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from rnn_sentiment import checkpoint, cli, text
from rnn_sentiment import predict as predict_module
from rnn_sentiment.models import ModelConfig, SentimentRNN
from rnn_sentiment.params import ModelParams, PadParams, Params, TokenizeParams
from rnn_sentiment.serving import Predictor, write_threshold
from rnn_sentiment.stages import train
from tests.conftest import synthetic_review
from tests.mlflow_server import free_port
from tests.thresholds import flipping_threshold, labels

REVIEWS = ["Great film, loved it.", "Awful   and\tboring.", "The plot was dull, the music superb."]
LINE = re.compile(r"^(positive|negative)\t(0\.\d{6}|1\.000000)\t(.*)$")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    texts = [synthetic_review(label, i) for i in range(20) for label in (0, 1)]
    tokenizer = text.fit(texts, TokenizeParams(max_features=50))
    tokenizer.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    architecture = ModelParams(embedding_dim=8, hidden_dim=8).model_dump()
    model = SentimentRNN(ModelConfig(vocab_size=tokenizer.get_vocab_size(), **architecture))
    params = Params(pad=PadParams(maxlen=24))
    train.write_model_dir(root / "models", model, params, root / "tokenizer.json")
    write_threshold(root / "models" / checkpoint.THRESHOLD_FILE, 0.5)  # as evaluate leaves it
    return root / "models"


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.from_dir(model_dir)


@pytest.fixture(autouse=True)
def forget_mlflow_uris(mlflow_store: str) -> Iterator[None]:
    """A model URI makes `tracking.configure` set MLflow's process-wide URIs, which would
    outlive conftest's per-test store: forget them before that store is."""
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def predict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_reviews(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".txt":
        path.write_text("".join(f"{review}\n" for review in frame["text"]), encoding="utf-8")
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def test_reviews_print_label_probability_and_review(
    model_dir: Path, predictor: Predictor, capsys: pytest.CaptureFixture[str]
) -> None:
    long_review = "a moving film " * 20
    code, out, _ = predict(["--model", str(model_dir), *REVIEWS, long_review], capsys)
    assert code == 0
    rows = [LINE.match(line).groups() for line in out.splitlines()]
    expected = predictor.predict([*REVIEWS, long_review])
    assert [label for label, _, _ in rows] == [p.label for p in expected]
    np.testing.assert_allclose(
        [float(p) for _, p, _ in rows], [p.probability for p in expected], rtol=0, atol=1e-6
    )
    assert rows[1][2] == "Awful and boring."  # one line per review, whatever its whitespace
    assert len(rows[3][2]) == 70 and rows[3][2].endswith("…")


@pytest.mark.parametrize(
    ("source", "target"), [("txt", "csv"), ("csv", "parquet"), ("parquet", "csv")]
)
def test_file_rows_come_back_with_probability_and_label(
    model_dir: Path, predictor: Predictor, tmp_path: Path, source: str, target: str
) -> None:
    frame = pd.DataFrame({"id": [7, 3, 5], "text": REVIEWS, "stars": [9, 1, 5]})
    if source == "txt":
        frame = frame[["text"]]
    reviews = write_reviews(tmp_path / f"reviews.{source}", frame)
    output = tmp_path / f"predictions.{target}"
    assert (
        cli.main(
            ["predict", "--model", str(model_dir), "--file", str(reviews), "--output", str(output)]
        )
        == 0
    )
    written = read_predictions(output)
    assert list(written.columns) == [*frame.columns, "probability", "label"]
    pd.testing.assert_frame_equal(written[frame.columns], frame, check_dtype=False)
    expected = predictor.predict(REVIEWS)
    np.testing.assert_allclose(written["probability"], [p.probability for p in expected], atol=1e-9)
    assert list(written["label"]) == [p.label for p in expected]


def test_file_without_output_prints_csv(
    model_dir: Path, predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews = write_reviews(tmp_path / "reviews.txt", pd.DataFrame({"text": REVIEWS}))
    code, out, _ = predict(["--model", str(model_dir), "--file", str(reviews)], capsys)
    assert code == 0
    printed = pd.read_csv(io.StringIO(out))
    assert list(printed["text"]) == REVIEWS
    np.testing.assert_allclose(printed["probability"], predictor.predict_proba(REVIEWS), atol=1e-9)


def test_blank_rows_of_a_file_are_kept_without_prediction_and_named(
    model_dir: Path, predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = [REVIEWS[0], None, "  \t ", REVIEWS[1], ""]
    reviews = write_reviews(tmp_path / "reviews.parquet", pd.DataFrame({"text": texts}))
    output = tmp_path / "predictions.parquet"
    argv = ["--model", str(model_dir), "--file", str(reviews), "--output", str(output)]
    code, _, err = predict(argv, capsys)
    assert code == 0
    warning = f"{reviews}: no text in 3 of 5 rows, left without a prediction: rows 2, 3, 5"
    assert err == f"warning: {warning}\n"
    written = read_predictions(output)
    assert len(written) == len(texts)
    assert written["probability"].isna().tolist() == [False, True, True, False, True]
    assert written["label"].isna().tolist() == [False, True, True, False, True]
    scored = written["probability"].dropna()
    np.testing.assert_allclose(scored, predictor.predict_proba(REVIEWS[:2]), atol=1e-9)


def test_a_file_without_any_text_is_refused(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n  \n", encoding="utf-8")
    code, out, err = predict(["--model", str(model_dir), "--file", str(reviews)], capsys)
    assert (code, out) == (2, "")
    assert err == f"error: --file {reviews}: none of its 2 rows has any text\n"


def write_bad_inputs(tmp: Path) -> None:
    (tmp / "reviews.txt").write_text("A fine film.\n", encoding="utf-8")
    pd.DataFrame({"id": [1], "review": ["A fine film."]}).to_csv(tmp / "no_text.csv", index=False)
    pd.DataFrame({"text": [10, 20]}).to_parquet(tmp / "numbers.parquet")
    (tmp / "latin1.txt").write_bytes("Un très bon film.\n".encode("latin-1"))


# `{tmp}` is the test's folder, holding `write_bad_inputs`; a later --model overrides the fixture's.
MISTAKES = {
    "missing model folder": (["--model", "{tmp}/nowhere", "fine"], "no model folder"),
    "URI without a store": (["--model", "models:/nope@champion", "x"], "no MLflow store at"),
    "unknown file type": (["--file", "{tmp}/reviews.json"], "use a .txt, .csv or .parquet file"),
    "missing file": (["--file", "{tmp}/gone.csv"], "gone.csv: no such file"),
    "no text column": (["--file", "{tmp}/no_text.csv"], "no `text` column (columns: id, review)"),
    "numbers as text": (["--file", "{tmp}/numbers.parquet"], "row 1 of column `text` is int"),
    "not UTF-8": (["--file", "{tmp}/latin1.txt"], "cannot read it ('utf-8' codec"),
    "unknown output type": (
        ["--file", "{tmp}/reviews.txt", "--output", "{tmp}/out.json"],
        "out.json: use a .csv or .parquet file",
    ),
    "blank review": (["fine", " "], "review 2 is empty"),
    "reviews and file": (["fine", "--file", "{tmp}/reviews.txt"], "not both"),
    "no reviews": ([], "nothing to predict"),
}


@pytest.mark.parametrize(("argv", "message"), MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_line_and_exit_code_2(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    write_bad_inputs(tmp_path)
    output = tmp_path / "out.csv"
    args = ["--model", str(model_dir), *(arg.format(tmp=tmp_path) for arg in argv)]
    if "--output" not in args:
        args += ["--output", str(output)]
    code, out, err = predict(args, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not output.exists()


def unwritable_output(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """An --output path that cannot be written, and what the error must say about it."""
    if kind == "missing folder":
        return tmp_path / "gone" / "out.csv", f"no folder {tmp_path / 'gone'}: create it"
    if kind == "a folder":
        (tmp_path / "out.csv").mkdir()
        return tmp_path / "out.csv", "is a folder: name a file"
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    (tmp_path / "locked").mkdir(mode=0o555)
    return tmp_path / "locked" / "out.csv", "cannot write in"


@pytest.mark.parametrize("kind", ["missing folder", "a folder", "read-only folder"])
def test_an_unwritable_output_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    def load_scorer(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(predict_module, "load_scorer", load_scorer)
    output, message = unwritable_output(tmp_path, kind)
    code, out, err = predict(["--output", str(output), "A fine film."], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: --output {output}") and err.count("\n") == 1, err
    assert message in err


def test_the_console_script_reports_without_a_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rnn-sentiment"
    done = subprocess.run(
        [str(script), "predict", "--model", str(tmp_path / "nowhere"), "A fine film."],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: no model folder {tmp_path / 'nowhere'}")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_labels_follow_the_threshold_the_evaluate_stage_left(
    model_dir: Path, predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    probabilities = predictor.predict_proba(REVIEWS)
    threshold = flipping_threshold(probabilities)
    write_threshold(folder / checkpoint.THRESHOLD_FILE, threshold)
    code, out, err = predict(["--model", str(folder), *REVIEWS], capsys)
    assert (code, err) == (0, "")
    printed = [line.split("\t")[0] for line in out.splitlines()]
    assert printed == labels(probabilities, threshold) != labels(probabilities, 0.5)

    (folder / checkpoint.THRESHOLD_FILE).unlink()
    code, out, err = predict(["--model", str(folder), *REVIEWS], capsys)
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == labels(
        probabilities, 0.5
    )
    assert err == f"note: no {folder / 'threshold.json'} (the evaluate stage writes it): " + (
        "labelling at 0.5\n"
    )


def test_an_unreachable_tracking_server_is_one_line_within_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    start = time.monotonic()
    code, out, err = predict(["--model", "models:/rnn-sentiment@champion", "Fine."], capsys)
    assert time.monotonic() - start < 10
    assert (code, out) == (2, "")
    assert err.startswith(f"error: no MLflow tracking server answers at {uri} (")
    assert err.count("\n") == 1
