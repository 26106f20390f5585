"""Typed, validated parameters for every stage, read from params.yaml.

Each block of params.yaml loads into a frozen pydantic model that forbids unknown keys, so a typo
or an impossible value fails at once with one line naming the key and what is allowed, before any
work is done or any output is touched. Counts are strict integers (`true` is not 1) and numbers
must be finite (`.inf` and `.nan` are refused).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from rnn_sentiment.errors import UserError

PARAMS_FILE = "params.yaml"
OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Size = Annotated[StrictInt, Field(ge=1)]  # a count or a width: 1 or more, and `true` is not 1


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BaseParams(_Block):
    seed: StrictInt = Field(42, ge=0, lt=2**32)  # NumPy's generators take seeds below 2**32
    # What a stage may allocate, estimated from its params before it starts (see `budget`).
    memory_budget_gb: float = Field(8.0, gt=0)


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
    max_features: StrictInt = Field(10_000, ge=1)
    lowercase: StrictBool = True
    strip_html: StrictBool = True
    split_punctuation: StrictBool = True


class PadParams(_Block):
    maxlen: StrictInt = Field(150, ge=1)
    padding: Literal["pre", "post"] = "post"
    truncating: Literal["pre", "post"] = "pre"


class ModelParams(_Block):
    """Every architecture choice of the network (`train.model`), defined and validated once here:
    `models.ModelConfig` is these fields plus the vocabulary size."""

    cell: Literal["rnn", "lstm", "gru"] = "gru"
    embedding_dim: Size = 100
    bigrams: StrictInt = Field(0, ge=0)  # word pairs with their own embedding, most frequent first
    trigrams: StrictInt = Field(0, ge=0)  # word triples likewise
    embedding_dropout: float = Field(0.0, ge=0, lt=1)
    word_dropout: float = Field(0.0, ge=0, lt=1)  # chance that a whole token is dropped
    input_layers: tuple[Size, ...] = ()  # Linear+ReLU sizes before the recurrence
    hidden_dim: Size = 256
    num_layers: Size = 1
    bidirectional: StrictBool = False
    dropout: float = Field(0.0, ge=0, lt=1)  # between recurrent layers and before the head
    pooling: Literal["last", "mean", "max", "mean_max"] = "mean_max"
    head_layers: tuple[Size, ...] = ()  # Linear+ReLU sizes between the readout and the logit
    members: Size = 1  # networks initialised apart; their mean logit is the output
    # Distinct n-grams (most frequent first) of a Naive-Bayes-weighted linear branch beside the
    # recurrence, one more member of the mean; 0: none. nb_order: their longest, in words.
    nb_features: StrictInt = Field(0, ge=0)
    nb_order: int = Field(3, ge=1, le=3)
    nb_negation: StrictBool = False  # the branch tells "not good" from "good" (`text.NEGATORS`)


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
    batch_size: Size = 32
    epochs: Size = 4
    clip_grad_norm: float | None = Field(1.0, gt=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    patience: Size = 2
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    bucket_by_length: StrictBool = True
    # bfloat16: mixed precision (autocast) for training and validation, weights kept in float32.
    precision: Literal["float32", "bfloat16"] = "float32"
    # After validation has chosen the epoch and the blend, count and train the Naive-Bayes branch
    # again on every training review, the validation split's too (`training.refit_branch`).
    refit_branch: StrictBool = False
    distributed: DistributedParams = DistributedParams()


class EvaluateParams(_Block):
    threshold: float = Field(0.5, gt=0, lt=1)
    registered_model_name: str = Field("rnn-sentiment", min_length=1)
    # The champion is chosen on validation (at the epoch `train.monitor` picked), never on test.
    promote_on: Literal["best_val_accuracy", "best_val_loss"] = "best_val_accuracy"
    min_improvement: float = Field(0.0, ge=0)


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
        raise UserError(f"{source}: {problem(err, model)}; fix it in {source}") from None


def problem(err: ValidationError, model: type[BaseModel]) -> str:
    """The first problem of `err`, raised validating `model`, in one line naming its dotted key."""
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, first["loc"][:-1])
        return f"unknown key '{key}'; allowed here: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"missing key '{key}'"
    return f"{key}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})"


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
