"""Checkpoints: a state dict with the config that builds its model, never a pickled module.

`torch.load(..., weights_only=True)` reads them back, so loading a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from rnn_sentiment.errors import UserError, reason
from rnn_sentiment.files import atomic_path
from rnn_sentiment.models import ModelConfig, Network, build
from rnn_sentiment.params import PadParams

# The model folder: the train stage writes the first three, the evaluate stage the threshold.
MODEL_FILE = "model.pt"
TOKENIZER_FILE = "tokenizer.json"
RUN_FILE = "mlflow_run.json"  # the MLflow run and logged model of this training
THRESHOLD_FILE = "threshold.json"  # the decision threshold the model was evaluated with


@dataclass(frozen=True)
class Checkpoint:
    """A trained model with the padding its inputs were trained with."""

    model: Network
    pad: PadParams


def save(path: str | os.PathLike[str], model: Network, pad: PadParams) -> None:
    state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    payload = {"model_config": model.config.to_dict(), "pad": pad.model_dump(), "state_dict": state}
    # Through a file object: given a path, torch names the archive's records after the file, here
    # a random temporary name, so the same weights would never hash the same in DVC's cache.
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save(payload, file)


def load(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint on `device`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no model at {path}: run `dvc repro` to train one, or pass --model")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: it is refused below anyway
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            payload = torch.load(path, map_location=device, weights_only=True)
        model = build(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
        pad = PadParams(**payload["pad"])
    except pickle.UnpicklingError:  # not quoted: torch's message suggests weights_only=False
        raise UserError(
            f"refused to load {path}: it holds more than tensors and plain settings, and "
            "unpickling it could run code; retrain with `dvc repro`, and only load checkpoints "
            "this project wrote"
        ) from None
    except (RuntimeError, KeyError, ValueError, TypeError, EOFError) as err:
        raise UserError(
            f"{path} is not a checkpoint this project wrote ({reason(err)}): retrain it with "
            "`dvc repro`"
        ) from None
    return Checkpoint(model.to(device).eval(), pad)
