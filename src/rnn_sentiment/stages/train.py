"""train stage: fit the recurrent model on the train split, select the best epoch on validation.

The validation split is carved from train (stratified, seeded, whole movies): the test split is
never looked at here. Outputs the checkpoint and the tokenizer it needs (`models/`, enough to
serve), the training metrics and the per-epoch curve, and one MLflow run holding all of it plus
the pyfunc model.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold

from rnn_sentiment import checkpoint, threads
from rnn_sentiment import params as params_lib
from rnn_sentiment.errors import UserError, exit_on_user_error
from rnn_sentiment.files import atomic_path, read_npz, write_json
from rnn_sentiment.models import ModelConfig, Network, build, count_parameters
from rnn_sentiment.params import TrainParams
from rnn_sentiment.training import EpochStats, Split, choose_device, fit, seed_everything

if TYPE_CHECKING:
    from dvclive import Live

RUN_FILE = "mlflow_run.json"
EXAMPLE_REVIEWS = ["A moving, beautifully acted film.", "Two hours I will never get back."]


@dataclass(frozen=True)
class TrainResult:
    model: Network
    history: list[EpochStats]
    best_epoch: int

    @property
    def metrics(self) -> dict[str, float]:
        best = self.history[self.best_epoch - 1]
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "best_val_loss": best.val_loss,
            "best_val_accuracy": best.val_accuracy,
            "best_train_loss": best.train_loss,
            "best_train_accuracy": best.train_accuracy,
            "train_seconds": sum(stats.seconds for stats in self.history),
            "parameters": count_parameters(self.model),
        }


def split_validation(
    ids: np.ndarray, labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """A stratified, seeded train/validation split of the training rows that keeps each movie
    (`groups`) on one side, as the official train/test split does. A random split would put
    reviews of one film on both sides and overrate the model by what it learns of that film.

    The validation split is one fold of round(1 / val_fraction), so about `val_fraction` of rows.
    """
    folds = max(2, round(1 / val_fraction))
    if len(np.unique(labels)) < 2 or min(np.bincount(labels)) < 2:
        raise UserError(
            "the train split needs at least 2 reviews of each label to carve a validation split"
        )
    if len(np.unique(groups)) < folds:
        raise UserError(
            f"the train split holds {len(np.unique(groups))} movies, too few to hold out "
            f"1/{folds} of them: raise train.val_fraction or use more reviews"
        )
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(ids, labels, groups))
    return Split.from_arrays(ids[train_idx], labels[train_idx]), Split.from_arrays(
        ids[val_idx], labels[val_idx]
    )


def run(
    params: TrainParams,
    seed: int,
    arrays: dict[str, np.ndarray],
    vocab_size: int,
    device: torch.device,
    on_epoch=lambda stats: None,
) -> TrainResult:
    """Train on the padded train arrays (`ids`, `labels`); return the model at its best epoch."""
    seed_everything(seed)
    try:
        config = ModelConfig(vocab_size=vocab_size, **params.model.model_dump())
    except ValueError as err:
        raise UserError(f"train.model: {err}") from None
    train, val = split_validation(
        arrays["ids"], arrays["labels"], arrays["groups"], params.val_fraction, seed
    )
    model = build(config)
    model.learn_ngrams(train.ids)
    history, best_epoch = fit(model, train, val, params, seed, device, on_epoch)
    return TrainResult(model, history, best_epoch)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument("--padded-dir", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True)
    parser.add_argument("--live-dir", type=Path, required=True, help="DVCLive's metrics and plots")
    args = parser.parse_args(argv)
    from rnn_sentiment import live, tracking  # here, not at the top: `run` works without them

    params = params_lib.load(args.params)
    arrays = read_npz(args.padded_dir / "train.npz")
    vocab_size = tokenizer_vocab_size(args.tokenizer)
    device = choose_device()
    print(f"train: {threads.use_share()} CPU threads", flush=True)
    # A terminated training (a killed `dvc exp run`) unwinds like Ctrl-C, so its MLflow run is
    # closed as failed instead of staying "running" forever.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with (
        tracking.training_run(tracked_params(params)) as run_id,
        live.open_live(args.live_dir) as logger,
    ):
        result = run(
            params.train,
            params.base.seed,
            arrays,
            vocab_size,
            device,
            on_epoch=lambda stats: report_epoch(stats, logger),
        )
        tracking.log_metrics({k: v for k, v in result.metrics.items() if k != "parameters"})
        write_model_dir(args.model_dir, result.model, params, args.tokenizer)
        model_uri = tracking.log_model(args.model_dir, EXAMPLE_REVIEWS)
        write_json({"run_id": run_id, "model_uri": model_uri}, args.model_dir / RUN_FILE)
    write_json(result.metrics | {"device": device.type}, args.metrics)
    curve = pd.DataFrame([stats.as_dict() for stats in result.history])
    with atomic_path(args.curve) as tmp:
        curve.to_csv(tmp, index=False, float_format="%.6f")
    best = result.history[result.best_epoch - 1]
    print(f"train: best epoch {result.best_epoch}, val accuracy {best.val_accuracy:.4f}")
    return 0


def report_epoch(stats: EpochStats, logger: Live) -> None:
    """Log an epoch to MLflow and to DVCLive (`dvc exp show` while the training runs) and say it
    in one line (progress bars vanish from logs)."""
    from rnn_sentiment import live, tracking

    metrics = {k: v for k, v in stats.as_dict().items() if k != "epoch"}
    tracking.log_epoch(metrics, stats.epoch)
    live.log_epoch(logger, metrics, stats.epoch)
    print(
        f"epoch {stats.epoch}: train loss {stats.train_loss:.4f} acc {stats.train_accuracy:.4f}, "
        f"val loss {stats.val_loss:.4f} acc {stats.val_accuracy:.4f} ({stats.seconds:.0f} s)",
        flush=True,
    )


def tokenizer_vocab_size(path: Path) -> int:
    from rnn_sentiment import text

    if not path.is_file():
        raise UserError(f"missing input file {path}: run `dvc repro` to produce it")
    return text.load(str(path)).get_vocab_size()


def tracked_params(params: params_lib.Params) -> dict[str, object]:
    """The params that shaped the model: everything but where the archive was fetched from."""
    return {k: v for k, v in params_lib.flatten(params).items() if not k.startswith("download.")}


def write_model_dir(
    model_dir: Path, model: Network, params: params_lib.Params, tokenizer: Path
) -> None:
    """The checkpoint and its tokenizer side by side: all that serving needs."""
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save(model_dir / checkpoint.MODEL_FILE, model, params.pad)
    with atomic_path(model_dir / checkpoint.TOKENIZER_FILE) as tmp:
        shutil.copyfile(tokenizer, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
