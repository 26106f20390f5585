"""The model registry: one version per logged model, and a `champion` alias that moves only to a
model that beats the champion on validation, never on test, and only on the same validation
reviews: another `base.seed`, `train.val_fraction` or train split carves other ones, easier or
harder, and the champion stays (`Selection.comparable`).

Moving the alias is read the champion, compare, set. Two evaluations finishing at once (two
`dvc exp` queue workers) would both read the old champion, and the last to set the alias would
win, better or not. With a local SQLite registry the three steps run under a file lock beside the
store, which makes them atomic for every process on this machine. A registry behind a server
offers no lock or compare-and-set: there an evaluation that moved the alias waits `SETTLE_S`,
reads it again and runs the policy again while another evaluation has moved it since. The alias
then ends on the better model, unless an evaluation takes longer than `SETTLE_S` between reading
the champion and setting the alias.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from rnn_sentiment import tracking
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import EvaluateParams

CHAMPION = "champion"
VALIDATION_METRICS = ("best_val_accuracy", "best_val_loss")  # at the epoch train.monitor picked
LOWER_IS_BETTER = frozenset({"best_val_loss"})
SETTLE_S = 2.0
ATTEMPTS = 5
# What MLflow answers for a registered model, or an alias, that does not exist.
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def should_promote(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None, policy: EvaluateParams
) -> bool:
    """Whether `candidate` should replace `champion`: it beats it on `policy.promote_on`, a
    validation metric, by more than `policy.min_improvement` (a tie keeps the champion). With no
    champion, or a champion without that metric (chosen before models were compared on
    validation), the candidate is promoted."""
    metric = policy.promote_on
    if champion is None or metric not in champion:
        return True
    gain = candidate[metric] - champion[metric]
    if metric in LOWER_IS_BETTER:
        gain = -gain
    return gain > policy.min_improvement


@dataclass(frozen=True)
class Selection:
    """What a training was selected on: its validation metrics at its best epoch, and which
    reviews they come from (`tracking.VAL_SPLIT_TAG`; None for a run that predates the tag)."""

    metrics: dict[str, float]
    split: str | None = None

    def comparable(self, other: Selection) -> bool:
        """Whether the two were measured on the same validation reviews, as far as is known: a
        run from before the split was recorded is compared on its metrics, as it was then."""
        return None in (self.split, other.split) or self.split == other.split


NOTHING_TO_BEAT = Selection({})  # no champion, or one whose run is gone: no metrics, no split


@dataclass(frozen=True)
class Promotion:
    """Where an evaluated model stands: its version, whether it is the champion, and the
    champion it was compared with (None when there was none to beat)."""

    version: int
    champion: bool
    metric: str
    value: float
    rival: int | None = None
    rival_value: float | None = None
    other_split: bool = False  # the champion was selected on other validation reviews

    def describe(self) -> str:
        """One line: `v3 (best_val_accuracy 0.8650) is the new champion, over v2 (0.8610)`."""
        ours = f"v{self.version} ({self.metric} {self.value:.4f})"
        if self.rival is None:
            return f"{ours} is the champion"
        theirs = f"v{self.rival}"
        if self.rival_value is not None:
            theirs += f" ({self.rival_value:.4f})"
        if self.champion:
            return f"{ours} is the new champion, over {theirs}"
        if self.other_split:
            return (
                f"{ours}: the champion stays {theirs}, selected on other validation reviews "
                "(another base.seed, train.val_fraction or train split), so the two cannot be "
                "compared; train with the champion's to compare, or move the alias by hand"
            )
        return f"{ours}: the champion stays {theirs}"


def record(
    run_id: str, model_uri: str, test_metrics: Mapping[str, float], policy: EvaluateParams
) -> Promotion:
    """Register the training's model (once: a re-evaluation finds its version), tag the version
    with the threshold and the validation and test metrics, and move `champion` to it if the
    policy says so."""
    tracking.configure()
    client = mlflow.MlflowClient()
    candidate = selection(client, run_id)
    if policy.promote_on not in candidate.metrics:
        raise UserError(
            f"the training run {run_id} recorded no {policy.promote_on}: retrain it (`dvc repro`)"
        )
    name = policy.registered_model_name
    with tracking.sqlite_lock(mlflow.get_registry_uri()) as locked:
        version = _register_once(client, name, run_id, model_uri)
        tags = {"threshold": policy.threshold, **candidate.metrics}
        if candidate.split is not None:
            tags[tracking.VAL_SPLIT_TAG] = candidate.split
        tags |= {f"test_{key}": value for key, value in test_metrics.items()}
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, str(value))
        return _promote(client, name, version, candidate, policy, settle=not locked)


def selection(client: mlflow.MlflowClient, run_id: str) -> Selection:
    """The validation metrics a training run recorded at its best epoch, and their split."""
    data = client.get_run(run_id).data
    metrics = {key: data.metrics[key] for key in VALIDATION_METRICS if key in data.metrics}
    return Selection(metrics, data.tags.get(tracking.VAL_SPLIT_TAG))


def _register_once(client: mlflow.MlflowClient, name: str, run_id: str, model_uri: str) -> int:
    """The version of `model_uri` under `name`, registered now if it is not yet (also when an
    earlier evaluation was killed right after registering it)."""
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        if version.name == name and version.source == model_uri:
            return int(version.version)
    return int(mlflow.register_model(model_uri, name).version)


def _promote(
    client: mlflow.MlflowClient,
    name: str,
    version: int,
    candidate: Selection,
    policy: EvaluateParams,
    settle: bool,
) -> Promotion:
    """Compare with the champion and set the alias, then read it back, until it stands still."""
    metric, value = policy.promote_on, candidate.metrics[policy.promote_on]
    rival = rival_value = None
    for _ in range(ATTEMPTS):
        current = _champion(client, name)
        if current is not None and int(current.version) == version:
            return Promotion(version, True, metric, value, rival, rival_value)
        if current is None:
            champion, rival = NOTHING_TO_BEAT, None
        else:
            champion, rival = _rival(client, current), int(current.version)
        rival_value = champion.metrics.get(metric)
        comparable = candidate.comparable(champion)
        if not comparable or not should_promote(candidate.metrics, champion.metrics, policy):
            return Promotion(
                version, False, metric, value, rival, rival_value, other_split=not comparable
            )
        try:
            client.set_registered_model_alias(name, CHAMPION, str(version))
        except MlflowException:  # a server's first alias, created by another evaluation at once
            continue
        if settle:
            time.sleep(SETTLE_S)  # let a concurrent evaluation's stale write land, then re-read
    raise UserError(
        f"the {CHAMPION} alias of {name} kept moving while this evaluation set it: another "
        "evaluation is running; run `dvc repro evaluate` again once it is done"
    )


def _champion(client: mlflow.MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in NOT_FOUND:
            return None
        raise


def _rival(client: mlflow.MlflowClient, champion: ModelVersion) -> Selection:
    """What the champion was selected on; nothing for a champion whose run is gone."""
    if not champion.run_id:
        return NOTHING_TO_BEAT
    try:
        return selection(client, champion.run_id)
    except MlflowException:
        return NOTHING_TO_BEAT
