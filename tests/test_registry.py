"""The registry: one version per model, and a champion chosen on validation, also when two
evaluations finish at once. Trainings here are bare MLflow runs with a logged model entry: the
registry reads their metrics and never loads the model."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterator

import mlflow
import pytest

from rnn_sentiment import registry, tracking
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import EvaluateParams

TEST = {"accuracy": 0.8, "roc_auc": 0.9}


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def mlflow_store(shared_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """One store for the module (creating one takes seconds); each test registers its own name."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", shared_store)
    yield shared_store
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return "m-" + hashlib.md5(request.node.nodeid.encode()).hexdigest()[:10]


def policy(name: str, **changes: object) -> EvaluateParams:
    return EvaluateParams(registered_model_name=name, **changes)


def fake_training(
    val_accuracy: float, val_loss: float | None = 0.4, split: str | None = "split-a"
) -> tuple[str, str]:
    """A finished run with the validation metrics a training records, on the validation reviews
    `split` names (None: a run from before the split was recorded), and its model's URI."""
    tracking.configure()
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("registry-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    )
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "best_val_accuracy", val_accuracy)
    if val_loss is not None:
        client.log_metric(run_id, "best_val_loss", val_loss)
    if split is not None:
        client.set_tag(run_id, tracking.VAL_SPLIT_TAG, split)
    client.set_terminated(run_id)
    model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    return run_id, f"models:/{model.model_id}"


def champion(name: str) -> int:
    return int(mlflow.MlflowClient().get_model_version_by_alias(name, registry.CHAMPION).version)


def versions(name: str) -> list[int]:
    return sorted(
        int(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'")
    )


ACC, LOSS = "best_val_accuracy", "best_val_loss"


@pytest.mark.parametrize(
    ("candidate", "champion_metrics", "changes", "promoted"),
    [
        ({ACC: 0.80}, None, {}, True),
        ({ACC: 0.80}, {ACC: 0.79}, {}, True),
        ({ACC: 0.80}, {ACC: 0.80}, {}, False),  # a tie keeps the champion
        ({ACC: 0.80}, {ACC: 0.81}, {}, False),
        ({ACC: 0.80}, {ACC: 0.79}, {"min_improvement": 0.02}, False),
        ({ACC: 0.80}, {ACC: 0.77}, {"min_improvement": 0.02}, True),
        ({LOSS: 0.30}, {LOSS: 0.35}, {"promote_on": LOSS}, True),
        ({LOSS: 0.40}, {LOSS: 0.35}, {"promote_on": LOSS}, False),
        ({ACC: 0.70}, {"test_accuracy": 0.99}, {}, True),  # a champion once chosen on test
    ],
)
def test_should_promote_compares_validation_metrics_by_the_policy(
    candidate: dict, champion_metrics: dict | None, changes: dict, promoted: bool
) -> None:
    assert registry.should_promote(candidate, champion_metrics, policy("m", **changes)) is promoted


def test_the_champion_is_chosen_on_validation_not_on_test(name: str) -> None:
    first = fake_training(val_accuracy=0.80)
    better_on_test_only = fake_training(val_accuracy=0.70)
    better_on_validation = fake_training(val_accuracy=0.85)

    assert registry.record(*first, TEST | {"accuracy": 0.70}, policy(name)).champion
    result = registry.record(*better_on_test_only, TEST | {"accuracy": 0.99}, policy(name))
    assert (result.champion, result.rival, result.rival_value) == (False, 1, 0.80)
    assert champion(name) == 1
    result = registry.record(*better_on_validation, TEST | {"accuracy": 0.60}, policy(name))
    assert result.champion and champion(name) == result.version == 3
    assert "is the new champion, over v1 (0.8000)" in result.describe()
    tags = mlflow.MlflowClient().get_model_version(name, "3").tags
    assert tags["test_accuracy"] == "0.6" and tags["best_val_accuracy"] == "0.85"


def test_a_model_selected_on_other_validation_reviews_does_not_unseat_the_champion(
    name: str,
) -> None:
    """Another seed carves another validation split, on which a model may score higher without
    being better: the champion stays, and the version records which split it was measured on."""
    registry.record(*fake_training(0.80, split="split-a"), TEST, policy(name))
    result = registry.record(*fake_training(0.95, split="split-b"), TEST, policy(name))

    assert not result.champion and champion(name) == 1
    assert result.describe().startswith("v2 (best_val_accuracy 0.9500): the champion stays v1")
    assert "other validation reviews" in result.describe()
    assert mlflow.MlflowClient().get_model_version(name, "2").tags["val_split"] == "split-b"
    assert registry.record(*fake_training(0.85, split="split-a"), TEST, policy(name)).champion


def test_a_champion_from_before_splits_were_recorded_is_compared_on_its_metrics(
    name: str,
) -> None:
    registry.record(*fake_training(0.80, split=None), TEST, policy(name))
    assert not registry.record(*fake_training(0.75), TEST, policy(name)).champion
    assert registry.record(*fake_training(0.85), TEST, policy(name)).champion


def test_min_improvement_and_loss_follow_params(name: str) -> None:
    low_loss, lower_loss = fake_training(0.8, val_loss=0.40), fake_training(0.7, val_loss=0.39)
    on_loss = policy(name, promote_on="best_val_loss", min_improvement=0.005)
    registry.record(*low_loss, TEST, on_loss)
    assert registry.record(*lower_loss, TEST, on_loss).champion
    assert champion(name) == 2


def test_one_model_one_version_whatever_is_re_evaluated(name: str) -> None:
    run_id, model_uri = fake_training(0.8)
    registry.record(run_id, model_uri, TEST, policy(name, threshold=0.5))
    again = registry.record(
        run_id, model_uri, TEST | {"accuracy": 0.81}, policy(name, threshold=0.7)
    )

    assert versions(name) == [1] and again.version == 1 and again.champion
    tags = mlflow.MlflowClient().get_model_version(name, "1").tags
    assert tags["threshold"] == "0.7" and tags["test_accuracy"] == "0.81"


def test_an_evaluation_killed_after_registering_is_finished_by_the_next(name: str) -> None:
    run_id, model_uri = fake_training(0.8)
    mlflow.register_model(model_uri, name)  # then the evaluation died: no tags, no alias

    result = registry.record(run_id, model_uri, TEST, policy(name, threshold=0.6))
    assert versions(name) == [1] and result.champion and champion(name) == 1
    assert mlflow.MlflowClient().get_model_version(name, "1").tags["threshold"] == "0.6"


def test_a_training_without_the_policys_metric_is_refused(name: str) -> None:
    run_id, model_uri = fake_training(0.8, val_loss=None)
    with pytest.raises(UserError, match=f"run {run_id} recorded no best_val_loss: retrain"):
        registry.record(run_id, model_uri, TEST, policy(name, promote_on="best_val_loss"))
    assert versions(name) == []


def _evaluate_at(start: float, store: str, run_id: str, model_uri: str, name: str) -> int:
    """One evaluation in its own process, starting at the wall-clock time `start`."""
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = store
    time.sleep(max(0.0, start - time.time()))
    return registry.record(run_id, model_uri, TEST, policy(name)).version


def test_two_evaluations_at_once_leave_the_alias_on_the_better_model(mlflow_store: str) -> None:
    """Two processes register and promote at the same instant, trial after trial: without the
    lock both read the old champion and the alias can end on whichever set it last."""
    old = fake_training(0.70)
    worse, better = fake_training(0.80), fake_training(0.90)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        pool.map(time.sleep, [0, 0])  # both workers up (imports done) before the first trial
        for trial in range(6):
            name = f"race-{trial}"
            registry.record(*old, TEST, policy(name))
            start = time.time() + 0.5
            jobs = [
                pool.apply_async(_evaluate_at, (start, mlflow_store, *training, name))
                for training in (worse, better)
            ]
            _, better_version = (job.get(timeout=120) for job in jobs)
            assert champion(name) == better_version, f"trial {trial}"
            assert versions(name) == [1, 2, 3]


class StaleWriter:
    """A registry client whose alias another evaluation overwrites right after this one sets it,
    with the champion it had read before: what a server without a lock lets happen."""

    def __init__(self, client: mlflow.MlflowClient, stale_version: str) -> None:
        self.client, self.stale_version, self.sets = client, stale_version, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)
        self.sets += 1
        if self.sets == 1:
            self.client.set_registered_model_alias(name, alias, self.stale_version)


def test_without_a_lock_a_stale_write_is_read_back_and_undone(name: str, monkeypatch) -> None:
    worse, better = fake_training(0.80), fake_training(0.90)
    registry.record(*worse, TEST, policy(name))
    monkeypatch.setattr(registry, "SETTLE_S", 0.0)
    monkeypatch.setattr(registry.tracking, "sqlite_lock", lambda uri: contextlib.nullcontext(False))
    client = StaleWriter(mlflow.MlflowClient(), stale_version="1")
    monkeypatch.setattr(registry.mlflow, "MlflowClient", lambda: client)

    result = registry.record(*better, TEST, policy(name))
    assert client.sets == 2 and result.champion and champion(name) == 2
