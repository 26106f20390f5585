"""The train and evaluate stages' inputs in a temporary folder: tiny padded arrays, their
tokenizer and a params.yaml, for running the stages' `main` in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from rnn_sentiment.files import write_npz
from rnn_sentiment.params import set_dotted
from tests.conftest import synthetic_padded

ARCHIVE = {"url": "https://example.org/aclImdb_tiny.tar.gz", "sha256": "ab" * 32}
TINY = {
    "train.model.embedding_dim": 4,
    "train.model.hidden_dim": 4,
    "train.epochs": 1,
    "train.batch_size": 8,
    "pad.maxlen": 24,
}


def write_inputs(root: Path, groups: np.ndarray | None = None, **changes: object) -> Path:
    """Write `padded/{train,test}.npz`, `tokenizer.json` and `params.yaml` under `root`, with
    `changes` (dotted keys) applied to the tiny training's params; return `root`."""
    arrays, tokenizer = synthetic_padded(per_class=20)
    if groups is not None:
        arrays["groups"] = groups
    for split in ("train", "test"):
        write_npz(root / "padded" / f"{split}.npz", **arrays)
    tokenizer.save(str(root / "tokenizer.json"))
    params: dict = {"download": dict(ARCHIVE), "train": {"model": {}}, "pad": {}, "evaluate": {}}
    for dotted, value in (TINY | changes).items():
        set_dotted(params, dotted, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def set_params(root: Path, **changes: object) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        set_dotted(params, dotted, value)
    path.write_text(yaml.safe_dump(params), encoding="utf-8")


def train_argv(root: Path) -> list[str]:
    return [
        *("--params", str(root / "params.yaml"), "--padded-dir", str(root / "padded")),
        *("--tokenizer", str(root / "tokenizer.json"), "--model-dir", str(root / "models")),
        *("--metrics", str(root / "metrics/train.json"), "--curve", str(root / "curve.csv")),
        *("--live-dir", str(root / "dvclive")),
    ]


def evaluate_argv(root: Path) -> list[str]:
    return [
        *("--params", str(root / "params.yaml"), "--model-dir", str(root / "models")),
        *("--padded-dir", str(root / "padded"), "--curve", str(root / "curve.csv")),
        *("--metrics", str(root / "metrics/eval.json"), "--plots-dir", str(root / "plots")),
    ]
