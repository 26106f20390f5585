"""The memory budget, `base.memory_budget_gb`: refuse a configuration too large to run, before
allocating anything.

Without it, `pad.maxlen: 1000000000` or `train.model.members: 1000` start allocating gigabytes
without a word and end in the kernel's OOM killer or an allocator's traceback. The estimates here
are arithmetic on the params and input sizes alone, so a refused configuration costs nothing. They
count what the params scale (arrays, weights, optimizer state, one batch's activations), not the
interpreter and its libraries, and aim a little above the measured peak rather than below it.

Kept free of torch, so that the pad stage need not import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnn_sentiment.errors import UserError
from rnn_sentiment.params import BaseParams, ModelParams, Params

GB = 10**9
FLOAT32, INT64 = 4, 8
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks of a recurrent cell
EVAL_BATCH = 256  # validation runs in batches of max(batch_size, EVAL_BATCH), as `training.fit`
# Values kept per step of one row, per unit of a recurrent layer's width, while training: the
# gates and states autograd saves, the output and its gradient (measured on CPU with torch 2.13).
SAVED_PER_UNIT = {"rnn": 5, "gru": 12, "lstm": 17}
SAVED_PER_EMBEDDING = 4  # likewise per embedding unit: embeddings, their sum, dropout masks, grads
SAVED_PER_NGRAM = 1  # and per embedding unit for each n-gram table read
# Without autograd (validation): per embedding unit, and per unit of the widest layer, whose
# input, gates and output are alive together.
INFERENCE_PER_EMBEDDING, INFERENCE_PER_UNIT = 2, 5
NGRAM_COUNTING = 8 * INT64  # per token of the train split while `learn_ngrams` counts one order
NB_COUNTING = 3 * INT64  # per token and order kept while the Naive-Bayes branch counts its n-grams
NB_KEY = INT64 + FLOAT32  # per Naive-Bayes n-gram beside its weight: its key and its ratio


@dataclass(frozen=True)
class Cost:
    """Bytes one part of a stage needs, and the params (with their values) that make it large."""

    what: str
    bytes: int
    set_by: tuple[str, ...]


def check(stage: str, costs: Sequence[Cost], budget_gb: float) -> None:
    """Raise a one-line `UserError` when `costs` add up to more than `budget_gb`, naming the
    largest of them and the params that set it."""
    total = sum(cost.bytes for cost in costs)
    if total <= budget_gb * GB:
        return
    largest = max(costs, key=lambda cost: cost.bytes)
    default = BaseParams.model_fields["memory_budget_gb"].default
    raise UserError(
        f"{stage} would need about {_gb(total)}, over base.memory_budget_gb: {budget_gb:g} "
        f"(default {default:g}); the most, {_gb(largest.bytes)}, goes to {largest.what}, set by "
        f"{', '.join(largest.set_by)}: lower those, or raise base.memory_budget_gb if this "
        "machine has the memory"
    )


def _gb(size: int) -> str:
    return f"{size / GB:,.1f} GB" if size >= GB / 10 else f"{size / GB:.2g} GB"


def parameters(model: ModelParams, vocab_size: int) -> dict[str, int]:
    """Trainable parameters of one network of `model` per part, counted without building it."""
    width = model.embedding_dim
    counts = {"embedding": vocab_size * width}
    for name in ("bigrams", "trigrams"):
        if size := getattr(model, name):
            counts[name] = (size + 1) * width  # row 0: "not a learned n-gram"
    layers = _mlp(width, model.input_layers)
    if model.input_layers:
        width = model.input_layers[-1]
    directions = 2 if model.bidirectional else 1
    gates = GATES[model.cell] * model.hidden_dim
    for _ in range(model.num_layers):
        layers += directions * gates * (width + model.hidden_dim + 2)  # weights and two biases
        width = model.hidden_dim * directions
    readout = width * (2 if model.pooling == "mean_max" else 1)
    layers += _mlp(readout, (*model.head_layers, 1))
    counts["layers"] = layers
    return counts


def _mlp(width: int, sizes: Sequence[int]) -> int:
    """Parameters of Linear layers of `sizes` (weights and biases) after an input of `width`."""
    total = 0
    for size in sizes:
        total += (width + 1) * size
        width = size
    return total


def activation_bytes(model: ModelParams, batch: int, steps: int, training: bool) -> int:
    """Bytes one batch of `batch` rows of `steps` tokens keeps alive in every network of `model`
    at once while training, or in one network at a time when predicting (no autograd)."""
    directions = 2 if model.bidirectional else 1
    widths = [model.hidden_dim * directions] * model.num_layers
    orders = (model.bigrams > 0) + (model.trigrams > 0)
    if not training:
        per_step = model.embedding_dim * (INFERENCE_PER_EMBEDDING + orders)
        per_step += INFERENCE_PER_UNIT * max([*model.input_layers, *widths])
        return batch * steps * per_step * FLOAT32
    per_step = model.embedding_dim * (SAVED_PER_EMBEDDING + SAVED_PER_NGRAM * orders)
    per_step += 2 * sum(model.input_layers) + SAVED_PER_UNIT[model.cell] * sum(widths)
    return batch * steps * per_step * FLOAT32 * model.members


def train_costs(params: Params, vocab_size: int, rows: int, steps: int) -> list[Cost]:
    """What the train stage allocates for a train split of `rows` reviews padded to `steps`."""
    train, model = params.train, params.train.model
    # Each weight, its gradient, the optimizer's moments and the best epoch's copy; under mixed
    # precision, a bfloat16 copy too.
    copies = 3 + (1 if train.optimizer == "sgd" else 2)
    per_weight = copies * FLOAT32 + (2 if train.precision == "bfloat16" else 0)
    members = (f"train.model.members: {model.members}",) if model.members > 1 else ()
    embedding = f"train.model.embedding_dim: {model.embedding_dim}"
    width = f"train.model.hidden_dim: {model.hidden_dim}"
    depth = (f"train.model.num_layers: {model.num_layers}",) if model.num_layers > 1 else ()
    parts = {
        "embedding": (
            "the word embeddings",
            (f"tokenize.max_features: {params.tokenize.max_features}", embedding),
        ),
        "bigrams": ("the bigram embeddings", (f"train.model.bigrams: {model.bigrams}", embedding)),
        "trigrams": (
            "the trigram embeddings",
            (f"train.model.trigrams: {model.trigrams}", embedding),
        ),
        "layers": ("the recurrent and dense layers", (width, *depth)),
    }
    costs = []
    for part, count in parameters(model, vocab_size).items():
        keys = 2 * INT64 * (count // model.embedding_dim) if part.endswith("grams") else 0
        what, set_by = parts[part]
        costs.append(Cost(what, (count * per_weight + keys) * model.members, members + set_by))
    if model.nb_features:
        costs.append(
            Cost(
                "the Naive-Bayes branch",
                (model.nb_features + 1) * (per_weight + NB_KEY),
                (f"train.model.nb_features: {model.nb_features}",),
            )
        )
    length = f"pad.maxlen: {params.pad.maxlen}"
    # The padded ids as read (int32), and the train and validation rows in int64; a refit of the
    # branch holds all of them in int64 once more.
    copies = 2 if train.refit_branch and model.nb_features else 1
    costs.append(Cost("the padded reviews", rows * steps * (4 + copies * INT64), (length,)))
    batch = max(
        activation_bytes(model, train.batch_size, steps, training=True),
        activation_bytes(model, max(train.batch_size, EVAL_BATCH), steps, training=False),
    )
    counting = max(
        rows * steps * NGRAM_COUNTING if model.bigrams or model.trigrams else 0,
        rows * steps * model.nb_order * NB_COUNTING if model.nb_features else 0,
    )
    if counting > batch:  # counting the n-grams comes before training, never beside a batch
        costs.append(Cost("counting the n-grams", counting, (length,)))
    else:
        batch_keys = (f"train.batch_size: {train.batch_size}", length, width, *depth)
        costs.append(Cost("the activations of a batch", batch, members + batch_keys))
    return costs


def check_train(params: Params, vocab_size: int, shape: tuple[int, ...]) -> None:
    """Refuse a training run over budget, for padded train ids of `shape` `[rows, steps]`."""
    rows, steps = shape
    check("train", train_costs(params, vocab_size, rows, steps), params.base.memory_budget_gb)
