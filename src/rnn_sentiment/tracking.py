"""The one module that talks to MLflow: runs, params, metrics, the pyfunc model and the registry.

The store is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts/`, unless
`MLFLOW_TRACKING_URI` says otherwise. The model is logged as *models from code*: MLflow stores a
three-line script that builds `SentimentPyfunc` from this package, plus the state-dict checkpoint
and the tokenizer as plain files, so loading a model never unpickles anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema

import rnn_sentiment
from rnn_sentiment import checkpoint
from rnn_sentiment.errors import UserError

EXPERIMENT = "rnn-sentiment"
CHAMPION = "champion"
MODEL_NAME = "model"
ENTRY_SCRIPT = """\
from mlflow.models import set_model

from rnn_sentiment.tracking import SentimentPyfunc

set_model(SentimentPyfunc())
"""
REQUIREMENTS = ("torch", "tokenizers", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "tqdm")


def project_root() -> Path:
    """The repository the pipeline runs in; a queued `dvc exp run` works in a copy under
    `.dvc/tmp/exps/`, whose runs belong in the original repository's store."""
    root = Path(os.environ.get("DVC_ROOT", Path.cwd())).resolve()
    parts = root.parts
    if ".dvc" in parts:
        root = Path(*parts[: parts.index(".dvc")])
    return root


def configure() -> str:
    """Point MLflow at `MLFLOW_TRACKING_URI`, or at the project's SQLite store; return the URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    return uri


def _experiment_id(uri: str) -> str:
    """The project's experiment, created with its artifacts beside a local SQLite store.

    Queue workers start trainings at once: on a new SQLite store each would create its tables,
    and on any store each would create the experiment, and all but one would fail. The first
    happens under a lock beside the store; the second is answered by the winner's experiment."""
    with _sqlite_lock(uri):
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///"))
            location = (store.parent / "mlartifacts").resolve().as_uri()
        try:
            return mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    return mlflow.get_experiment_by_name(EXPERIMENT).experiment_id


@contextlib.contextmanager
def _sqlite_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock (`mlflow.db.lock`) beside a local SQLite store; other stores take
    no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def run_tags() -> dict[str, str]:
    """Where a run came from: git commit, dirty tree, DVC stage and experiment name."""
    tags = {}
    if commit := _git("rev-parse", "HEAD"):
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    for variable, tag in (("DVC_STAGE", "dvc_stage"), ("DVC_EXP_NAME", "dvc_exp_name")):
        if value := os.environ.get(variable):
            tags[tag] = value
    return tags


@contextlib.contextmanager
def training_run(params: Mapping[str, Any]) -> Iterator[str]:
    """Open one MLflow run for a training, with its params and tags; yield its id."""
    uri = configure()
    run_name = os.environ.get("DVC_EXP_NAME")
    with mlflow.start_run(
        experiment_id=_experiment_id(uri), run_name=run_name, tags=run_tags()
    ) as run:
        mlflow.log_params({key: str(value) for key, value in params.items()})
        yield run.info.run_id


def log_epoch(metrics: Mapping[str, float], epoch: int) -> None:
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()}, step=epoch)


def log_metrics(metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()})


def log_model(model_dir: Path, input_example: list[str]) -> str:
    """Log the trained model as a pyfunc that takes raw review strings; return its model URI."""
    from rnn_sentiment.serving import Predictor

    outputs = _as_frame(Predictor.from_dir(model_dir).predict_proba(input_example))
    with tempfile.TemporaryDirectory() as tmp:
        entry = Path(tmp) / "sentiment_model.py"
        entry.write_text(ENTRY_SCRIPT, encoding="utf-8")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(entry),
            artifacts={
                "model": str(model_dir / checkpoint.MODEL_FILE),
                "tokenizer": str(model_dir / checkpoint.TOKENIZER_FILE),
            },
            code_paths=[str(Path(rnn_sentiment.__file__).parent)],
            model_config={"precision": "auto"},  # what `load_pyfunc(uri, {...})` may override
            signature=_signature(input_example, outputs),
            input_example=input_example,
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


# The reviews' input schema is `Any`, not `string`: with `string`, MLflow's server casts JSON
# null, numbers and booleans to the strings "None", "3", "True" before the model sees them, and
# they would be scored as text. Untouched, they reach `serving.validate`, which refuses them with
# a message naming the review, answered as HTTP 400.
REVIEWS_SCHEMA = Schema([ColSpec(AnyType())])


def _signature(input_example: list[str], outputs: pd.DataFrame) -> ModelSignature:
    return ModelSignature(REVIEWS_SCHEMA, infer_signature(input_example, outputs).outputs)


def _as_frame(probabilities: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    labels = np.where(probabilities >= threshold, "positive", "negative")
    return pd.DataFrame({"probability": probabilities, "label": labels})


def _as_reviews(model_input: Any) -> list[Any]:
    """Accept what MLflow hands a pyfunc: a string, a list, an array, a Series, or a frame (its
    `text` column, else its first: MLflow's check against the one-input signature keeps only the
    first). Missing values become None, for `validate` to name."""
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        model_input = model_input[column]
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.Series | np.ndarray):
        model_input = model_input.tolist()
    if not isinstance(model_input, list | tuple):
        raise UserError(f"expected a list of reviews, got {type(model_input).__name__}")
    return [None if pd.api.types.is_scalar(x) and pd.isna(x) else x for x in model_input]


def load_pyfunc(uri: str, model_config: dict[str, Any] | None = None) -> mlflow.pyfunc.PyFuncModel:
    """Load a logged model by URI from the project's store; MLflow's errors become one line.

    `model_config` reaches the model's `load_context`, e.g. `{"precision": "float32"}`."""
    _require_store(uri, configure())
    try:
        return mlflow.pyfunc.load_model(uri, model_config=model_config)
    except (MlflowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot load model {uri}: {reason}") from None


def _require_store(uri: str, store: str) -> None:
    """A `models:/` or `runs:/` URI is looked up in the store: report a missing SQLite file
    rather than let MLflow create it empty, then not find the model in it."""
    if not uri.startswith(("models:/", "runs:/")) or not store.startswith("sqlite:///"):
        return
    if not Path(store.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"no MLflow store at {store} to find {uri} in: run `dvc repro` to fill it, or set "
            "MLFLOW_TRACKING_URI to the store that holds the model"
        )


class SentimentPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: raw review strings in, `probability` and `label` per review out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from rnn_sentiment.serving import Predictor

        precision = (context.model_config or {}).get("precision", "auto")
        self.predictor = Predictor.from_files(
            context.artifacts["model"], context.artifacts["tokenizer"], precision=precision
        )

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Score the reviews MLflow hands over, after checking them against the signature.

        `pd.DataFrame` is the one input hint MLflow neither validates nor builds a signature from
        (an unannotated `predict` gets a warning on every import); the signature stays the one
        `log_model` writes, and `_as_reviews` still takes any list-like input.
        """
        try:
            probabilities = self.predictor.predict_proba(_as_reviews(model_input))
        except UserError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        return _as_frame(probabilities, self.predictor.threshold)


def record_evaluation(
    run_id: str,
    model_uri: str,
    metrics: Mapping[str, float],
    figures: Mapping[str, Any],
    model_name: str,
) -> dict[str, Any]:
    """Log test metrics and figures into the training's run, register its model, and move the
    `champion` alias to it only when its test accuracy beats the current champion's."""
    configure()
    with mlflow.start_run(run_id=run_id):
        log_metrics({f"test_{key}": value for key, value in metrics.items()})
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{name}.png")
    version = mlflow.register_model(
        model_uri, model_name, tags={"test_accuracy": str(metrics["accuracy"])}
    )
    client = mlflow.MlflowClient()
    champion_accuracy = _champion_accuracy(client, model_name)
    promoted = champion_accuracy is None or metrics["accuracy"] > champion_accuracy
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return {
        "version": int(version.version),
        "champion": promoted,
        "champion_accuracy": champion_accuracy,
    }


def _champion_accuracy(client: mlflow.MlflowClient, model_name: str) -> float | None:
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    accuracy = champion.tags.get("test_accuracy")
    return None if accuracy is None else float(accuracy)
