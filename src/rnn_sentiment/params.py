"""Typed, validated parameters for every stage, read from params.yaml.

Each block of params.yaml loads into a frozen pydantic model that forbids unknown keys, so a typo
or an impossible value fails at once with one line naming the key and what is allowed, before any
work is done or any output is touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rnn_sentiment.errors import UserError

PARAMS_FILE = "params.yaml"
OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Block):
    seed: int = Field(42, ge=0)


class Source(_Block):
    """Where an archive can be fetched from, and the digest it must have."""

    url: str = Field(min_length=1)
    sha256: str = Field(pattern=SHA256_PATTERN)


class DownloadParams(_Block):
    url: str = Field(OFFICIAL_URL, min_length=1)
    sha256: str = Field(OFFICIAL_SHA256, pattern=SHA256_PATTERN)
    mirrors: tuple[Source, ...] = ()

    def sources(self) -> tuple[Source, ...]:
        """The primary source first, then the mirrors, in the order they are tried."""
        return (Source(url=self.url, sha256=self.sha256), *self.mirrors)


class TokenizeParams(_Block):
    max_features: int = Field(10_000, ge=1)
    lowercase: bool = True
    strip_html: bool = True
    split_punctuation: bool = True


class PadParams(_Block):
    maxlen: int = Field(150, ge=1)
    padding: Literal["pre", "post"] = "post"
    truncating: Literal["pre", "post"] = "pre"


class ModelParams(_Block):
    """Architecture knobs; `models.ModelConfig` re-validates them with the vocabulary size."""

    cell: Literal["rnn", "lstm", "gru"] = "gru"
    embedding_dim: int = Field(100, ge=1)
    bigrams: int = Field(0, ge=0)
    trigrams: int = Field(0, ge=0)
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    word_dropout: float = Field(0.0, ge=0, lt=1)
    input_layers: tuple[int, ...] = ()
    hidden_dim: int = Field(256, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max", "mean_max"] = "mean_max"
    head_layers: tuple[int, ...] = ()
    members: int = Field(1, ge=1)


class DistributedParams(_Block):
    """Processes that train one model together (DistributedDataParallel); docs/distributed.md."""

    workers: int = Field(1, ge=1)  # processes per machine, one per GPU on CUDA; 1 = no DDP
    nodes: int = Field(1, ge=1)  # machines; where they meet comes from the environment


class TrainParams(_Block):
    model: ModelParams = ModelParams()
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "linear"] = "constant"
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(4, ge=1)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=1)
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    bucket_by_length: bool = True
    # bfloat16: mixed precision (autocast) for training and validation, weights kept in float32.
    precision: Literal["float32", "bfloat16"] = "float32"
    distributed: DistributedParams = DistributedParams()


class EvaluateParams(_Block):
    threshold: float = Field(0.5, gt=0, lt=1)
    registered_model_name: str = Field("rnn-sentiment", min_length=1)


class Params(_Block):
    base: BaseParams = BaseParams()
    download: DownloadParams = DownloadParams()
    tokenize: TokenizeParams = TokenizeParams()
    pad: PadParams = PadParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


Block = TypeVar("Block", bound=BaseModel)


def parse(raw: dict[str, Any], model: type[Block] = Params, source: str = PARAMS_FILE) -> Block:
    """Validate `raw` into `model`, turning the first problem into a one-line `UserError`."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, first["loc"][:-1])
            raise UserError(
                f"{source}: unknown key '{key}'; allowed here: {', '.join(allowed)}"
            ) from None
        raise UserError(
            f"{source}: {key}: {first['msg']} (got {first.get('input')!r}); fix it in {source}"
        ) from None


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the block that `loc` points into."""
    for part in loc:
        if not isinstance(part, str):
            continue
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return sorted(model.model_fields)


def load(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Read and validate the whole params file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params file {path} not found: run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML ({err.__class__.__name__}); fix it") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of stage blocks, got {type(raw).__name__}")
    return parse(raw, Params, str(path))


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `tree["train"]["lr"] = value` for `dotted="train.lr"`, as `dvc exp run -S` does."""
    *parents, key = dotted.split(".")
    for parent in parents:
        tree = tree[parent]
    tree[key] = value


def flatten(params: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Flatten params into dotted keys (`tokenize.max_features`), as DVC and MLflow name them."""
    flat: dict[str, Any] = {}
    for name, value in params:
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            flat.update(flatten(value, f"{key}."))
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            flat[key] = [item.model_dump() for item in value]
        else:
            flat[key] = list(value) if isinstance(value, tuple) else value
    return flat
