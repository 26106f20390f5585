"""train stage: fit the recurrent model on the train split, select the best epoch on validation.

The validation split is carved from train (stratified, seeded, whole movies): the test split is
never looked at here. Outputs the checkpoint, the tokenizer it needs and the MLflow run's ids
(`models/`, enough to serve), the training metrics and the per-epoch curve, and one MLflow run
holding all of it plus the pyfunc model. Params and data are checked before the run opens.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold

from rnn_sentiment import budget, checkpoint, distributed, text, threads
from rnn_sentiment import params as params_lib
from rnn_sentiment.distributed import SINGLE, Shard
from rnn_sentiment.embeddings import embedding_report
from rnn_sentiment.errors import UserError
from rnn_sentiment.files import atomic_path, read_npz, write_json
from rnn_sentiment.lifecycle import stage_main
from rnn_sentiment.models import ModelConfig, Network, build, count_parameters
from rnn_sentiment.params import TrainParams
from rnn_sentiment.training import (
    EpochStats,
    Split,
    choose_device,
    fit,
    refit_branch,
    require_precision,
    seed_everything,
)

if TYPE_CHECKING:
    from dvclive import Live
    from tokenizers import Tokenizer

EXAMPLE_REVIEWS = ["A moving, beautifully acted film.", "Two hours I will never get back."]


@dataclass(frozen=True)
class TrainResult:
    model: Network
    history: list[EpochStats]
    best_epoch: int
    refit_seconds: float = 0.0  # `training.refit_branch`, counted in train_seconds

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
            "train_seconds": sum(stats.seconds for stats in self.history) + self.refit_seconds,
            "parameters": count_parameters(self.model),
        }


def split_validation(
    ids: np.ndarray, labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[Split, Split, str]:
    """A stratified, seeded train/validation split of the training rows that keeps each movie
    (`groups`) on one side, as the official train/test split does. A random split would put
    reviews of one film on both sides and overrate the model by what it learns of that film.

    The validation split is one fold of round(1 / val_fraction), so about `val_fraction` of rows.
    Returned with it is `split_digest` of the rows it holds.
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
    return (
        Split.from_arrays(ids[train_idx], labels[train_idx]),
        Split.from_arrays(ids[val_idx], labels[val_idx]),
        split_digest(val_idx, labels, groups),
    )


def split_digest(rows: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> str:
    """Which reviews a validation split holds, as 16 hex digits: a digest of its rows among the
    train split's, with their labels and movies. Another `base.seed`, `train.val_fraction` or
    train split changes it; another tokenizer or `pad.maxlen` does not. Two trainings' validation
    metrics can be compared only when their digests are equal (`registry.py`)."""
    digest = hashlib.sha256(np.int64(len(labels)).tobytes())
    for column in (rows, labels[rows], groups[rows]):
        digest.update(np.ascontiguousarray(column, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Prepared:
    """What a training starts from, checked: the model config, the train/validation splits and
    each token id's role in negation scope (`text.word_roles`) and which reviews the validation
    split holds (`split_digest`)."""

    config: ModelConfig
    train: Split
    val: Split
    roles: torch.Tensor
    val_split: str


def prepare(
    params: TrainParams, seed: int, arrays: dict[str, np.ndarray], tokenizer: Tokenizer
) -> Prepared:
    """Build the model config and carve the validation split: all that bad params or data can
    fail on, so `main` checks it before opening an MLflow run, which a mistake would leave FAILED.
    """
    try:
        config = ModelConfig.from_dict(
            {**params.model.model_dump(), "vocab_size": tokenizer.get_vocab_size()}
        )
    except ValueError as err:
        raise UserError(f"train.model: {err}") from None
    train, val, val_split = split_validation(
        arrays["ids"], arrays["labels"], arrays["groups"], params.val_fraction, seed
    )
    return Prepared(config, train, val, torch.from_numpy(text.word_roles(tokenizer)), val_split)


def run(
    params: TrainParams,
    seed: int,
    arrays: dict[str, np.ndarray],
    tokenizer: Tokenizer,
    device: torch.device,
    on_epoch=lambda stats: None,
    shard: Shard = SINGLE,
) -> TrainResult:
    """Train on the padded train arrays (`ids`, `labels`) that `tokenizer` gave; return the model
    at its best epoch."""
    prepared = prepare(params, seed, arrays, tokenizer)
    return fit_prepared(prepared, params, seed, device, on_epoch, shard)


def fit_prepared(
    prepared: Prepared,
    params: TrainParams,
    seed: int,
    device: torch.device,
    on_epoch=lambda stats: None,
    shard: Shard = SINGLE,
) -> TrainResult:
    """Build the model from a checked config and fit it; return it at its best epoch.

    With a `shard`, this process is one rank of a distributed training: every rank splits and
    learns n-grams from the whole train split alike, and trains on its share of each batch."""
    seed_everything(seed)
    model = build(prepared.config)
    model.learn_ngrams(prepared.train.ids, prepared.train.labels, prepared.roles)
    train, val = prepared.train, prepared.val
    history, best_epoch = fit(model, train, val, params, seed, device, on_epoch, shard)
    if not (params.refit_branch and params.model.nb_features):
        return TrainResult(model, history, best_epoch)
    every_review = Split(torch.cat([train.ids, val.ids]), torch.cat([train.labels, val.labels]))
    seconds = refit_branch(model, every_review, params, seed, device, best_epoch)
    return TrainResult(model, history, best_epoch, seconds)


@stage_main
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
    tracking.configure()  # an unreachable tracking server fails now, before any work
    train_file = args.padded_dir / "train.npz"
    arrays = read_npz(train_file)
    tokenizer = text.load(args.tokenizer)
    vocab_size = tokenizer.get_vocab_size()
    text.check_ids(arrays["ids"], vocab_size, train_file, args.tokenizer)
    budget.check_train(params, vocab_size, arrays["ids"].shape)
    device = choose_device()
    require_precision(params.train.precision, device)  # as `fit` does, before a run opens
    prepared = prepare(params.train, params.base.seed, arrays, tokenizer)
    if distributed.must_launch(params.train.distributed):  # start the workers, each runs `main`
        distributed.launch(
            main, (argv if argv is not None else sys.argv[1:],), params.train.distributed
        )
        return 0
    shard, device = distributed.join(params.train.distributed, device)
    if not shard.is_main:  # ranks other than 0 train in step with it; it tracks and writes
        fit_prepared(prepared, params.train, params.base.seed, device, shard=shard)
        shard.leave()
        return 0
    if shard.world == 1:  # a distributed training's workers were given their share
        print(f"train: {threads.use_share()} CPU threads", flush=True)
    with (
        tracking.training_run(
            tracked_params(params), run_label(params.train), prepared.val_split
        ) as run_id,
        live.open_live(args.live_dir) as logger,
    ):
        tracking.log_dataset(run_id, train_file, "training", params.download, len(arrays["labels"]))
        result = fit_prepared(
            prepared,
            params.train,
            params.base.seed,
            device,
            on_epoch=lambda stats: report_epoch(stats, logger),
            shard=shard,
        )
        shard.leave()  # what follows is rank 0's alone
        tracking.log_metrics({k: v for k, v in result.metrics.items() if k != "parameters"})
        tracking.log_embedding(*embedding_report(result.model, tokenizer))
        write_model_dir(args.model_dir, result.model, params, args.tokenizer)
        model_uri = tracking.log_model(args.model_dir, EXAMPLE_REVIEWS)
        run_file = args.model_dir / checkpoint.RUN_FILE
        write_json({"run_id": run_id, "model_uri": model_uri}, run_file)
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


def tracked_params(params: params_lib.Params) -> dict[str, object]:
    """The params of a training: where its data came from and all that shaped the model. Not the
    evaluate block: the evaluate stage records the values it scores with, which may change after
    the training (`tracking.log_evaluation`)."""
    return {k: v for k, v in params_lib.flatten(params).items() if not k.startswith("evaluate.")}


def run_label(params: TrainParams) -> str:
    """The start of a run's name, what tells trainings apart at a glance: `gru-h256-e4`."""
    return f"{params.model.cell}-h{params.model.hidden_dim}-e{params.epochs}"


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
