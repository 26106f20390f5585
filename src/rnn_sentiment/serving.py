"""Raw review text in, sentiment out: the tokenizer, padding and model of one training run.

Serving runs the very functions the pipeline ran (`text.encode`, `pad.pad_sequences`,
`training.predict_logits`), so a review gets the same probability from the CLI, the Python API,
the MLflow server and the evaluate stage. This module also holds `rnn-sentiment predict` and a
handle on MLflow's own HTTP server (`mlflow_server`, `invoke`) for the tests and the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from rnn_sentiment import checkpoint, text
from rnn_sentiment.errors import UserError, exit_on_user_error
from rnn_sentiment.files import atomic_path
from rnn_sentiment.params import PadParams
from rnn_sentiment.stages.pad import pad_sequences
from rnn_sentiment.training import choose_device, predict_logits

BATCH_SIZE = 256
THRESHOLD = 0.5
# `models:/...`, `runs:/...`, `file:///...`, `s3://...`; a single letter is a Windows drive.
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
SHOWN_CHARS = 70  # of each review echoed by `rnn-sentiment predict REVIEW...`
LISTED_ROWS = 10  # of the rows without text named in the warning


@dataclass(frozen=True)
class Prediction:
    probability: float  # of a positive review
    label: str  # "positive" or "negative"


class Scorer(Protocol):
    """What `rnn-sentiment predict` needs from a model, wherever it was loaded from."""

    def predict(self, reviews: Sequence[str]) -> list[Prediction]: ...


class Predictor:
    """Predicts the sentiment of raw reviews with a trained model and its own tokenizer."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        pad: PadParams,
        threshold: float = THRESHOLD,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.pad = pad
        self.threshold = threshold
        self.device = next(model.parameters()).device

    @classmethod
    def from_files(
        cls,
        model_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        threshold: float = THRESHOLD,
    ) -> Predictor:
        device = choose_device()
        trained = checkpoint.load(model_path, device)
        tokenizer_path = Path(tokenizer_path)
        if not tokenizer_path.is_file():
            raise UserError(f"no tokenizer at {tokenizer_path}: run `dvc repro` to produce it")
        return cls(trained.model, text.load(str(tokenizer_path)), trained.pad, threshold)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], threshold: float = THRESHOLD) -> Predictor:
        """Load the train stage's output folder (`model.pt` + `tokenizer.json`)."""
        directory = Path(directory)
        return cls.from_files(
            directory / checkpoint.MODEL_FILE, directory / checkpoint.TOKENIZER_FILE, threshold
        )

    def predict_proba(self, reviews: Sequence[str]) -> np.ndarray:
        """Probability that each review is positive."""
        validate(reviews)
        if len(reviews) == 0:  # `not reviews` is ambiguous for an array
            return np.empty(0, dtype=np.float32)
        token_ids = text.encode(self.tokenizer, reviews)
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter(
            (i for ids in token_ids for i in ids), dtype=np.int64, count=int(offsets[-1])
        )
        padded, _ = pad_sequences(values, offsets, self.pad)
        logits = predict_logits(
            self.model, torch.from_numpy(padded.astype(np.int64)), BATCH_SIZE, self.device
        )
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def predict(self, reviews: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(float(p), "positive" if p >= self.threshold else "negative")
            for p in self.predict_proba(reviews)
        ]


@dataclass(frozen=True)
class PyfuncPredictor:
    """A model logged to MLflow, scored through its pyfunc: exactly what `mlflow models serve` runs.

    `model` is an `mlflow.pyfunc.PyFuncModel`, typed loosely so this module needs no MLflow.
    """

    model: Any

    def predict(self, reviews: Sequence[str]) -> list[Prediction]:
        if not reviews:  # MLflow's schema check refuses an empty batch
            return []
        frame = self.model.predict(list(reviews))
        pairs = zip(frame["probability"], frame["label"], strict=True)
        return [Prediction(float(probability), str(label)) for probability, label in pairs]


def validate(reviews: Sequence[object]) -> None:
    """Refuse what is not a review, naming the first offender and its position (1-based)."""
    if isinstance(reviews, str):
        raise UserError("expected a list of reviews, got a single string: wrap it in a list")
    for position, review in enumerate(reviews, start=1):
        if review is None:
            raise UserError(f"review {position} is null: send the review's text as a string")
        if not isinstance(review, str):
            raise UserError(
                f"review {position} is {type(review).__name__}, not text: send it as a string"
            )
        if not review.strip():
            raise UserError(f"review {position} is empty: send some text to classify")


def load_scorer(model: str) -> Scorer:
    """The train stage's folder loads directly (no MLflow import); a URI, or a folder holding an
    `MLmodel` file, loads through MLflow from the project's store."""
    if URI_SCHEME.match(model) or (Path(model) / "MLmodel").is_file():
        from rnn_sentiment import tracking

        return PyfuncPredictor(tracking.load_pyfunc(model))
    if not Path(model).is_dir():
        raise UserError(
            f"no model folder {model}: run `dvc repro` to train one, or pass --model with a "
            "folder or an MLflow model URI such as models:/rnn-sentiment@champion"
        )
    return Predictor.from_dir(model)


# --- `rnn-sentiment predict` ------------------------------------------------------------------


def _read_txt(path: Path) -> pd.DataFrame:
    """One review a line; a final newline ends the last line rather than adding an empty one."""
    content = path.read_text(encoding="utf-8")
    return pd.DataFrame({"text": content.removesuffix("\n").split("\n") if content else []})


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"text": str})  # a review such as "10" stays text


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".txt": _read_txt,
    ".csv": _read_csv,
    ".parquet": pd.read_parquet,
}
WRITERS: dict[str, Callable[[pd.DataFrame, Path], object]] = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def _suffix(path: Path, allowed: dict[str, object], option: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        *others, last = allowed
        raise UserError(f"{option} {path}: use a {', '.join(others)} or {last} file")
    return suffix


def read_reviews(path: Path) -> pd.DataFrame:
    """The rows of a review file, with its reviews in a `text` column."""
    reader = READERS[_suffix(path, READERS, "--file")]
    if not path.is_file():
        raise UserError(f"--file {path}: no such file")
    try:
        frame = reader(path)
    except (ValueError, OSError) as err:  # parse errors, bad encoding, not Parquet
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"--file {path}: cannot read it ({reason})") from None
    if "text" not in frame.columns:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise UserError(f"--file {path}: no `text` column (columns: {columns}); name it `text`")
    if frame.empty:
        raise UserError(f"--file {path}: no reviews in it")
    return frame


def _is_missing(value: object) -> bool:
    """None, NaN or pd.NA: what pandas and Parquet make of an absent review."""
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def blank_rows(texts: Sequence[object], source: Path) -> list[int]:
    """Row numbers (1-based) with no review text; a value that is not text at all is refused."""
    blank = []
    for row, review in enumerate(texts, start=1):
        if _is_missing(review) or (isinstance(review, str) and not review.strip()):
            blank.append(row)
        elif not isinstance(review, str):
            raise UserError(
                f"--file {source}: row {row} of column `text` is {type(review).__name__}, not text"
            )
    return blank


def score_rows(scorer: Scorer, frame: pd.DataFrame, blank: list[int]) -> pd.DataFrame:
    """The input rows plus `probability` and `label`; `blank` rows (1-based) keep both empty."""
    keep = np.ones(len(frame), dtype=bool)
    keep[np.asarray(blank, dtype=np.int64) - 1] = False
    predictions = scorer.predict(frame["text"][keep].tolist())
    probability = np.full(len(frame), np.nan)
    probability[keep] = [p.probability for p in predictions]
    label = np.full(len(frame), None, dtype=object)
    label[keep] = [p.label for p in predictions]
    return frame.assign(probability=probability, label=label)


def _warn_blank(blank: list[int], total: int, source: Path) -> None:
    listed = ", ".join(map(str, blank[:LISTED_ROWS]))
    more = f" and {len(blank) - LISTED_ROWS} more" if len(blank) > LISTED_ROWS else ""
    rows = "row" if len(blank) == 1 else "rows"
    print(
        f"warning: {source}: no text in {len(blank)} of {total} rows, left without a "
        f"prediction: {rows} {listed}{more}",
        file=sys.stderr,
    )


def _shown(review: str) -> str:
    """A review on one line, cut to SHOWN_CHARS: enough to tell the printed lines apart."""
    flat = " ".join(review.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnn-sentiment predict",
        description="Sentiment of movie reviews. Prints `label<TAB>probability<TAB>review` per "
        "review given as an argument; with --file, the file's rows plus `probability` and "
        "`label` as CSV (or into --output).",
    )
    parser.add_argument("reviews", nargs="*", metavar="REVIEW", help="a review's text, quoted")
    parser.add_argument(
        "--file",
        type=Path,
        help="reviews to score: .txt (one a line), or .csv/.parquet "
        "with a `text` column; rows without text are kept, without a prediction",
    )
    parser.add_argument(
        "--output", type=Path, help="write the rows with their predictions here (.csv/.parquet)"
    )
    parser.add_argument(
        "--model",
        default="models",
        help="the train stage's folder (default: models), or an MLflow model URI such as "
        "models:/rnn-sentiment@champion, models:/rnn-sentiment/3 or runs:/<run_id>/model",
    )
    return parser


@exit_on_user_error
def predict_main(argv: list[str] | None = None) -> int:
    """`rnn-sentiment predict`: reviews from arguments or a file, predictions to stdout or file."""
    args = _parser().parse_args(argv)
    if args.reviews and args.file:
        raise UserError("give reviews as arguments or --file PATH, not both")
    if not args.reviews and not args.file:
        raise UserError('nothing to predict: give reviews ("A fine film.") or --file PATH')
    if args.output:
        _suffix(args.output, WRITERS, "--output")
    frame, blank = _file_rows(args.file) if args.file else _argument_rows(args.reviews)
    scored = score_rows(load_scorer(args.model), frame, blank)
    if blank:
        _warn_blank(blank, len(frame), args.file)
    _emit(scored, args.output, as_table=args.file is not None)
    return 0


def _emit(scored: pd.DataFrame, output: Path | None, as_table: bool) -> None:
    """Into `output` (whole or not at all); else a file's rows as CSV, arguments as lines."""
    if output:
        with atomic_path(output) as tmp:
            WRITERS[output.suffix.lower()](scored, tmp)
    elif as_table:
        scored.to_csv(sys.stdout, index=False)
    else:
        for row in scored.itertuples(index=False):
            print(f"{row.label}\t{row.probability:.6f}\t{_shown(row.text)}")


def _argument_rows(reviews: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """A blank review typed as an argument is a slip of the keyboard: refused, like the API does."""
    validate(reviews)
    return pd.DataFrame({"text": reviews}), []


def _file_rows(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """A file's blank rows are data, not a slip: kept without a prediction, so that the output
    lines up row for row with the input; a file with no text at all is refused."""
    frame = read_reviews(path)
    blank = blank_rows(frame["text"].tolist(), path)
    if len(blank) == len(frame):
        raise UserError(f"--file {path}: none of its {len(frame)} rows has any text")
    return frame, blank


# --- MLflow's HTTP server ---------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def invoke(url: str, payload: object, timeout: float = 60.0) -> tuple[int, Any]:
    """POST `payload` as JSON to the server's `/invocations`; return the status and parsed reply.

    An HTTP error is an answer too (400 for a bad review), so it is returned, not raised.
    """
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        with err:
            body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, body.decode("utf-8", "replace")


@contextlib.contextmanager
def mlflow_server(model_uri: str, port: int | None = None, timeout: float = 90.0) -> Iterator[str]:
    """Run `mlflow models serve` for `model_uri` on 127.0.0.1 while the block runs; yield its URL.

    It is MLflow's own server, as docs/serving.md has users run it, reading the store that
    `tracking.configure` picks. It runs in its own process group so that stopping it also stops
    the uvicorn process MLflow starts under it.
    """
    from rnn_sentiment import tracking

    port = port or free_port()
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager"]
    command += ["local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking.configure(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, server, log, timeout)
            yield url
        finally:
            _stop(server)


def _wait_until_up(url: str, server: subprocess.Popen, log: Any, timeout: float) -> None:
    """Poll `/ping` until the server answers; fail with its output if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/ping", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.25)
    log.seek(0)
    output = log.read().decode("utf-8", "replace")[-5000:]
    state = f"exited with {server.returncode}" if server.poll() is not None else "timed out"
    raise RuntimeError(f"mlflow models serve {state} before answering /ping:\n{output}")


def _stop(server: subprocess.Popen) -> None:
    """Terminate the server's process group (its own: see `start_new_session`), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
