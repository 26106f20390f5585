"""The module that talks to MLflow's tracking: the store, runs, params, metrics, datasets and the
logged model (the registry is `registry.py`; the pyfunc MLflow loads is `pyfunc.py`).

The store is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts/`, unless
`MLFLOW_TRACKING_URI` says otherwise. The model is logged as *models from code*: MLflow stores a
three-line script that builds `pyfunc.SentimentPyfunc` from this package, plus the state-dict
checkpoint, the tokenizer and the threshold as plain files, so loading a model never unpickles
anything.

Only the training holds its run open. Everything logged later (the evaluation) goes to the run by
id, which leaves its status alone: a finished training stays FINISHED whatever happens to a
later stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

import rnn_sentiment
from rnn_sentiment import checkpoint, progress, pyfunc
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import DownloadParams

# Models logged before `pyfunc.py` existed load through this name (their entry script imports
# it from here), so it stays importable from this module.
from rnn_sentiment.pyfunc import SentimentPyfunc as SentimentPyfunc
from rnn_sentiment.serving import THRESHOLD, Predictor, write_threshold

EXPERIMENT = "rnn-sentiment"
MODEL_NAME = "model"
REQUIREMENTS = ("torch", "tokenizers", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "tqdm")
PROBE_TIMEOUT_S = 5.0
# Who runs a training, so that the next one can tell a run whose process died from a live one.
HOST_TAG, PID_TAG, KILLED_TAG = "host", "pid", "killed_reason"
# Which reviews a training's validation split held (`stages.train.split_digest`): its validation
# metrics compare with another run's only where the two tags are equal.
VAL_SPLIT_TAG = "val_split"


def project_root() -> Path:
    """The repository the pipeline runs in; a queued `dvc exp run` works in a copy under
    `.dvc/tmp/exps/`, whose runs belong in the original repository's store."""
    root = Path(os.environ.get("DVC_ROOT", Path.cwd())).resolve()
    parts = root.parts
    if ".dvc" in parts:
        root = Path(*parts[: parts.index(".dvc")])
    return root


def configure() -> str:
    """Point MLflow at `MLFLOW_TRACKING_URI`, or at the project's SQLite store; return the URI.

    A tracking server that does not answer fails here, in one line and within seconds, rather
    than after MLflow's minutes of retries and pages of tracebacks."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
    registry = os.environ.get("MLFLOW_REGISTRY_URI") or uri
    servers = {uri: "MLFLOW_TRACKING_URI"}
    servers.setdefault(registry, "MLFLOW_REGISTRY_URI")
    for server, variable in servers.items():
        _require_reachable(server, variable)
    if not progress.bars_shown():  # MLflow's own bars, for each artifact it moves, too
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    return uri


def _require_reachable(uri: str, variable: str) -> None:
    """Ask an http(s) tracking server (the one `variable` names) for its `/health`; other stores
    need no network."""
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # it answers: what it answers is MLflow's business
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"no MLflow tracking server answers at {uri} ({reason}): start it, or set "
            f"{variable} to a running one (unset, MLflow uses sqlite:///mlflow.db here)"
        ) from None


def _experiment_id(uri: str) -> str:
    """The project's experiment, created with its artifacts beside a local SQLite store.

    Queue workers start trainings at once: on a new SQLite store each would create its tables,
    and on any store each would create the experiment, and all but one would fail. The first
    happens under a lock beside the store; the second is answered by the winner's experiment."""
    with sqlite_lock(uri):
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
def sqlite_lock(uri: str) -> Iterator[bool]:
    """Hold an exclusive lock (`mlflow.db.lock`) beside a local SQLite store; yield whether one is
    held (other stores take none). The kernel releases it when the process ends, however it ends.
    Not re-entrant: a second `sqlite_lock` in the same process would wait for the first."""
    if not uri.startswith("sqlite:///"):
        yield False
        return
    path = Path(uri.removeprefix("sqlite:///") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield True


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def run_tags() -> dict[str, str]:
    """Where a run came from: git commit, dirty tree, DVC stage and experiment name, and the
    host and process that train (see `close_stale_runs`)."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    if commit := _git("rev-parse", "HEAD"):
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    for variable, tag in (("DVC_STAGE", "dvc_stage"), ("DVC_EXP_NAME", "dvc_exp_name")):
        if value := os.environ.get(variable):
            tags[tag] = value
    return tags


def run_name(label: str, params: Mapping[str, Any]) -> str:
    """The `dvc exp` name when there is one; else `label`, the commit and a digest of the params
    (`gru-h256-e4-3fbc223-9c1e`): one name per configuration of one commit, never a random one."""
    if name := os.environ.get("DVC_EXP_NAME"):
        return name
    flat = json.dumps(params, sort_keys=True, default=str).encode("utf-8")
    commit = _git("rev-parse", "--short=7", "HEAD")
    return "-".join(part for part in (label, commit, hashlib.sha256(flat).hexdigest()[:4]) if part)


@contextlib.contextmanager
def training_run(
    params: Mapping[str, Any], label: str = "run", val_split: str | None = None
) -> Iterator[str]:
    """Open one MLflow run for a training, with its params, tags and name; yield its id.
    `val_split` names the reviews its validation metrics come from (`VAL_SPLIT_TAG`).

    Runs of earlier trainings on this host whose process died without closing them (kill -9, a
    power cut) are closed as KILLED first."""
    uri = configure()
    experiment_id = _experiment_id(uri)
    close_stale_runs(experiment_id)
    tags = run_tags() | ({VAL_SPLIT_TAG: val_split} if val_split else {})
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name(label, params), tags=tags
    ) as run:
        mlflow.log_params({key: str(value) for key, value in params.items()})
        yield run.info.run_id


def close_stale_runs(experiment_id: str) -> list[str]:
    """Mark KILLED, with a reason tag, the RUNNING runs this host started from a process that no
    longer exists; return their ids. A live process's run (a queue worker training beside this
    one) is left alone, and so is every run of another host: its processes cannot be seen."""
    host = socket.gethostname()
    client = mlflow.MlflowClient()
    running = client.search_runs(
        [experiment_id], f"attributes.status = 'RUNNING' and tags.{HOST_TAG} = '{host}'"
    )
    active = mlflow.active_run()
    closed = []
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if active is not None and active.info.run_id == run.info.run_id:
            continue  # this process's own open run, not an earlier one with a recycled pid
        reason = f"process {pid} on {host} ended without closing this run (killed?)"
        client.set_tag(run.info.run_id, KILLED_TAG, reason)
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        closed.append(run.info.run_id)
    return closed


def _alive(pid: int) -> bool:
    """Whether process `pid` exists; this process is not the one that opened an earlier run."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def log_epoch(metrics: Mapping[str, float], epoch: int) -> None:
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()}, step=epoch)


def log_metrics(metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()})


def log_embedding(neighbours: str, word_map: Any) -> None:
    """The probe words' nearest neighbours and the map of frequent words, under `embedding/`."""
    mlflow.log_text(neighbours, "embedding/neighbours.txt")
    mlflow.log_figure(word_map, "embedding/map.png")


def file_md5(path: str | os.PathLike[str]) -> str:
    """The md5 of a file's bytes: the hash DVC records for it in dvc.lock."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def log_dataset(
    run_id: str, path: Path, context: str, source: DownloadParams, rows: int | None = None
) -> None:
    """Log the arrays at `path` as a dataset input of the run (`context`: training, evaluation),
    named after the file, with the archive they were made from and its sha256. Its digest is
    the md5 DVC records for the file, so a run names the exact data it saw."""
    scheme = urllib.parse.urlparse(source.url).scheme
    kind, key = ("http", "url") if scheme in ("http", "https") else ("local", "uri")
    profile = {"archive_sha256": source.sha256, "dvc_md5": file_md5(path), "path": str(path)}
    if rows is not None:
        profile["rows"] = rows
    dataset = Dataset(
        name=f"imdb-{Path(path).stem}",
        digest=profile["dvc_md5"],
        source_type=kind,
        source=json.dumps({key: source.url}),
        profile=json.dumps(profile),
    )
    inputs = [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    mlflow.MlflowClient().log_inputs(run_id, datasets=inputs)


def log_model(model_dir: Path, input_example: list[str]) -> str:
    """Log the trained model as a pyfunc that takes raw review strings; return its model URI.

    Its threshold is the default until the evaluate stage records its own (`record_threshold`)."""
    probabilities = Predictor.from_dir(model_dir, THRESHOLD).predict_proba(input_example)
    outputs = pyfunc.as_frame(probabilities, THRESHOLD)
    with tempfile.TemporaryDirectory() as tmp:
        entry = Path(tmp) / "sentiment_model.py"
        entry.write_text(pyfunc.ENTRY_SCRIPT, encoding="utf-8")
        threshold = Path(tmp) / checkpoint.THRESHOLD_FILE
        write_threshold(threshold, THRESHOLD)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(entry),
            artifacts={
                pyfunc.MODEL: str(model_dir / checkpoint.MODEL_FILE),
                pyfunc.TOKENIZER: str(model_dir / checkpoint.TOKENIZER_FILE),
                pyfunc.THRESHOLD_ARTIFACT: str(threshold),
            },
            code_paths=[str(Path(rnn_sentiment.__file__).parent)],
            model_config={"precision": "auto"},  # what `load_pyfunc(uri, {...})` may override
            signature=pyfunc.signature(input_example, outputs),
            input_example=input_example,
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


def record_threshold(model_uri: str, threshold_file: Path) -> bool:
    """Replace the logged model's threshold file with `threshold_file`, so its pyfunc (served,
    loaded by any URI) labels at the threshold the model was evaluated with. The model keeps its
    registry version. Returns False for a model logged before thresholds travelled with models.
    """
    info = mlflow.models.get_model_info(model_uri)
    artifacts = info.flavors.get("python_function", {}).get("artifacts", {})
    if pyfunc.THRESHOLD_ARTIFACT not in artifacts:
        return False
    logged = artifacts[pyfunc.THRESHOLD_ARTIFACT]["path"]  # e.g. artifacts/threshold.json
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / posixpath.basename(logged)
        shutil.copyfile(threshold_file, upload)
        mlflow.MlflowClient().log_model_artifact(
            info.model_id, str(upload), posixpath.dirname(logged)
        )
    return True


def require_run(run_id: str) -> None:
    """Fail in one line, before any work, where the store does not hold the run a model folder
    names (`MLFLOW_TRACKING_URI` changed since training, or the store was replaced): the
    evaluation is logged into that run, and a traceback after scoring would say so too late."""
    store = mlflow.get_tracking_uri()
    _require_store(f"runs:/{run_id}", store)
    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(
            f"the MLflow store at {store} holds no run {run_id}, which trained the model: set "
            "MLFLOW_TRACKING_URI to the store it was trained against, or retrain it "
            "(`dvc repro --force train`)"
        ) from None


def log_evaluation(
    run_id: str,
    metrics: Mapping[str, float],
    figures: Mapping[str, Any],
    evaluate_params: Mapping[str, Any],
) -> None:
    """Log test metrics, figures and the evaluate params they were scored with into the training's
    run, by id: its status stays as the training left it. The params go in as tags, since a
    re-evaluation (another threshold) must be able to replace them; MLflow params cannot be."""
    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(f"test_{key}", float(value), now, 0) for key, value in metrics.items()],
        tags=[RunTag(key, str(value)) for key, value in evaluate_params.items()],
    )
    for name, figure in figures.items():
        client.log_figure(run_id, figure, f"plots/{name}.png")


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
