"""evaluate stage: score the trained model on the held-out test split, once.

Writes the test metrics (`dvc metrics show`), the curves DVC plots render (ROC, precision-recall,
confusion matrix) and the threshold the labels were scored with (`threshold.json`, beside the
model: every path that labels reviews reads it). Logs them into the training's MLflow run and
puts the threshold into its logged model; then registers the model (once) and moves the
`champion` alias to it only when it beats the champion on validation (`registry.py`): the test
score is reported beside, never used to choose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn import metrics as skm

from rnn_sentiment import checkpoint
from rnn_sentiment import params as params_lib
from rnn_sentiment.files import atomic_path, read_npz, require_file, write_json
from rnn_sentiment.lifecycle import stage_main
from rnn_sentiment.params import EvaluateParams
from rnn_sentiment.serving import write_threshold
from rnn_sentiment.training import choose_device, predict_logits

CURVE_POINTS = 200  # enough for a smooth plot, small enough for `dvc plots diff`


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Test metrics of positive-class probabilities against 0/1 labels."""
    predicted = (probabilities >= threshold).astype(int)
    (tn, fp), (fn, tp) = skm.confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "accuracy": skm.accuracy_score(labels, predicted),
        "precision": skm.precision_score(labels, predicted, zero_division=0),
        "recall": skm.recall_score(labels, predicted, zero_division=0),
        "f1": skm.f1_score(labels, predicted, zero_division=0),
        "roc_auc": skm.roc_auc_score(labels, probabilities),
        "log_loss": skm.log_loss(labels, probabilities, labels=[0, 1]),
        "true_negatives": int(tn),
        "false_positives": int(fp),
        "false_negatives": int(fn),
        "true_positives": int(tp),
    }


def curves(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, pd.DataFrame]:
    """The tables behind DVC's ROC, precision-recall and confusion-matrix plots."""
    fpr, tpr, roc_thresholds = skm.roc_curve(labels, probabilities)
    precision, recall, pr_thresholds = skm.precision_recall_curve(labels, probabilities)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)})
    pr = pd.DataFrame(
        {"recall": recall[:-1], "precision": precision[:-1], "threshold": pr_thresholds}
    )
    confusion = pd.DataFrame(
        {"actual": labels, "predicted": (probabilities >= threshold).astype(int)}
    )
    return {"roc": _thin(roc), "pr": _thin(pr), "confusion": confusion}


def _thin(curve: pd.DataFrame) -> pd.DataFrame:
    keep = np.unique(
        np.linspace(0, len(curve) - 1, min(len(curve), CURVE_POINTS)).round().astype(int)
    )
    return curve.iloc[keep].reset_index(drop=True)


def figures(tables: dict[str, pd.DataFrame], history: pd.DataFrame) -> dict[str, Figure]:
    """The same curves as figures, for the MLflow UI (no pyplot: no global state, no backend)."""
    roc, pr, confusion = Figure(figsize=(4, 4)), Figure(figsize=(4, 4)), Figure(figsize=(4, 4))
    ax = roc.subplots()
    ax.plot(tables["roc"]["fpr"], tables["roc"]["tpr"])
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax = pr.subplots()
    ax.plot(tables["pr"]["recall"], tables["pr"]["precision"])
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    skm.ConfusionMatrixDisplay.from_predictions(
        tables["confusion"]["actual"],
        tables["confusion"]["predicted"],
        display_labels=["negative", "positive"],
        ax=confusion.subplots(),
        colorbar=False,
    )
    curve = Figure(figsize=(8, 3.5))
    for ax, what in zip(curve.subplots(1, 2), ("loss", "accuracy"), strict=True):
        ax.plot(history["epoch"], history[f"train_{what}"], marker="o", label="train")
        ax.plot(history["epoch"], history[f"val_{what}"], marker="o", label="validation")
        ax.set(xlabel="epoch", title=what)
        ax.legend()
    return {
        "roc": roc,
        "precision_recall": pr,
        "confusion_matrix": confusion,
        "training_curve": curve,
    }


def run(
    params: EvaluateParams,
    model: torch.nn.Module,
    arrays: dict[str, np.ndarray],
    device: torch.device,
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """Score `model` on the padded test arrays; return the metrics and the curve tables."""
    ids = torch.from_numpy(arrays["ids"].astype(np.int64))
    logits = predict_logits(model, ids, 512, device).astype(np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    labels = arrays["labels"].astype(int)
    return score(labels, probabilities, params.threshold), curves(
        labels, probabilities, params.threshold
    )


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--padded-dir", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True, help="the train stage's epoch curve")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    # Here, not at the top: `run` works without MLflow.
    from rnn_sentiment import registry, tracking

    all_params = params_lib.load(args.params)
    params = all_params.evaluate
    tracking.configure()  # an unreachable tracking server fails now, before any work
    device = choose_device()
    run_file = require_file(args.model_dir / checkpoint.RUN_FILE)
    run_info = json.loads(run_file.read_text(encoding="utf-8"))
    run_id, model_uri = run_info["run_id"], run_info["model_uri"]
    tracking.require_run(run_id)  # before the model loads: its run must be there
    trained = checkpoint.load(args.model_dir / checkpoint.MODEL_FILE, device)
    history = pd.read_csv(require_file(args.curve))
    test_file = args.padded_dir / "test.npz"
    arrays = read_npz(test_file)
    metrics, tables = run(params, trained.model, arrays, device)
    for name, table in tables.items():
        with atomic_path(args.plots_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6f")
    threshold_file = args.model_dir / checkpoint.THRESHOLD_FILE
    write_threshold(threshold_file, params.threshold)
    tracking.log_evaluation(
        run_id, metrics, figures(tables, history), params_lib.flatten(params, "evaluate.")
    )
    rows = len(arrays["labels"])
    tracking.log_dataset(run_id, test_file, "evaluation", all_params.download, rows)
    if not tracking.record_threshold(model_uri, threshold_file):
        print(f"note: {model_uri} predates thresholds in models: MLflow serves it at 0.5; retrain")
    promotion = registry.record(run_id, model_uri, metrics, params)
    write_json(metrics, args.metrics)
    print(
        f"evaluate: test accuracy {metrics['accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f}; "
        f"{params.registered_model_name} {promotion.describe()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
