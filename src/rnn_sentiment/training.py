"""The training loop: length-bucketed batches, BCE on one logit, early stopping on validation loss.

Everything a function uses comes in as an argument (model, data, optimizer, device), so the loop
can be driven from the train stage, a benchmark or a test alike.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from rnn_sentiment.distributed import SINGLE, Shard
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import TrainParams
from rnn_sentiment.progress import progress
from rnn_sentiment.text import PAD_ID

BUCKET_BATCHES = 50  # batches sorted together by length: similar lengths, still well shuffled


@dataclass(frozen=True)
class Split:
    """Padded token ids `[N, T]` and labels `[N]` of one split, as tensors ready for batching."""

    ids: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_arrays(cls, ids: np.ndarray, labels: np.ndarray) -> Split:
        return cls(
            torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels.astype(np.float32))
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return (self.ids != PAD_ID).sum(1).numpy()


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed every generator the run touches, so the same params give the same metrics on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` has bfloat16 kernels of its own: a GPU that supports it, or a CPU that
    oneDNN runs bfloat16 on (AVX512BW/VL/DQ, fast with AVX512-BF16 or AMX; ARM's BF16). On a CPU
    with AVX2 alone PyTorch emulates bfloat16 and oneDNN has no bfloat16 LSTM."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def require_precision(name: str, device: torch.device) -> None:
    """Refuse `train.precision: bfloat16` in one line where the device lacks bfloat16 kernels:
    an LSTM would stop at its first batch with a RuntimeError from oneDNN, and the other cells
    would train on emulated bfloat16."""
    if name == "bfloat16" and not native_bfloat16(device):
        raise UserError(
            "train.precision: bfloat16 needs bfloat16 kernels (a CPU with AVX512, fast with "
            f"AVX512-BF16 or AMX, or a GPU with bfloat16), which this {device.type} lacks: "
            "set train.precision: float32"
        )


def precision(dtype: torch.dtype, device: torch.device) -> torch.autocast:
    """Run the block in `dtype`: float32 as is, bfloat16 as mixed precision (autocast), where
    matrix products and recurrences compute in bfloat16 and the weights stay float32. On a CPU with
    native bfloat16 (AVX512-BF16, AMX) that trains an LSTM about 1.4x faster."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, bucket: bool
) -> list[np.ndarray]:
    """Row indices per batch; with `rng`, shuffled; with `bucket`, similar lengths grouped.

    Bucketing sorts windows of `BUCKET_BATCHES` batches by length, so each batch is trimmed to a
    length close to its rows' and little compute goes to padding, at no cost in correctness.
    """
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    if bucket:
        window = batch_size * BUCKET_BATCHES
        order = np.concatenate(
            [chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in _windows(order, window)]
        )
    split = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        split = [split[i] for i in rng.permutation(len(split))]
    return split


def _windows(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, max(len(order), 1), size)]


def train_one_epoch(
    model: nn.Module,
    data: Split,
    index_batches: list[np.ndarray],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    clip_grad_norm: float | None,
    dtype: torch.dtype = torch.float32,
    description: str = "train",
    shard: Shard = SINGLE,
) -> tuple[float, float]:
    """One pass over `index_batches` in `dtype` (see `precision`); returns the mean loss and the
    accuracy on the fly. A loss that is not finite stops training (`require_finite`). With a
    `shard`, this rank trains on its rows of each batch."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    bar = progress(index_batches, desc=description, unit="batch", leave=False)
    for number, index in enumerate(bar, 1):
        rows, weight = shard.batch(index)  # all rows and weight 1 in a single process
        ids = data.ids[rows].to(device)
        labels = data.labels[rows].to(device)
        optimizer.zero_grad(set_to_none=True)
        with precision(dtype, device):
            logits = model(ids).float()  # [B], or [M, B]: each ensemble member has its own loss
        members = logits.numel() // len(rows)
        loss = loss_fn(logits, labels.expand_as(logits)) / members  # summed over the rows
        (loss * weight / len(index)).backward()  # see `Shard.batch`: the mean over the batch
        if clip_grad_norm is not None:
            # Recurrent gradients can explode over long reviews; clipping keeps BPTT stable.
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        value = loss.item()
        require_finite(
            value, f"training loss of {description}, batch {number}", clip_grad_norm, dtype
        )
        optimizer.step()
        schedule.step()
        if weight:  # a stand-in row of a rank left without rows is not counted
            total_loss += value
            predicted = logits.detach().reshape(members, -1).mean(0) > 0
            correct += (predicted == (labels > 0.5)).sum().item()
    total_loss, correct = shard.sum(total_loss, correct)
    return total_loss / len(data), correct / len(data)


def train_epoch(
    model: nn.Module,
    data: Split,
    params: TrainParams,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    description: str,
    shard: Shard = SINGLE,
) -> tuple[float, float]:
    """`train_one_epoch` over the batches of `params` drawn from `rng`, in its precision."""
    index_batches = batches(data.lengths, params.batch_size, rng, params.bucket_by_length)
    dtype = getattr(torch, params.precision)
    return train_one_epoch(
        model,
        data,
        index_batches,
        optimizer,
        schedule,
        device,
        params.clip_grad_norm,
        dtype,
        description,
        shard,
    )


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    ids: torch.Tensor,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    members: bool = False,
) -> np.ndarray:
    """Logits for every row of `ids`, in order (batched by length for speed): [N], or with
    `members` each member's of an `Ensemble`, [M, N]."""
    model.eval()
    forward = model.member_logits if members else model
    lengths = (ids != PAD_ID).sum(1).numpy()
    logits = None
    with precision(dtype, device):
        for index in batches(lengths, batch_size, rng=None, bucket=True):
            batch = forward(ids[index].to(device)).float().cpu().numpy()
            if logits is None:
                logits = np.empty((*batch.shape[:-1], len(ids)), dtype=np.float32)
            logits[..., index] = batch
    return logits if logits is not None else np.empty(0, dtype=np.float32)


def gathered_logits(
    model: nn.Module,
    data: Split,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    shard: Shard = SINGLE,
    members: bool = False,
) -> torch.Tensor:
    """`predict_logits` of every row of `data` ([N], or with `members` [M, N]): each rank of a
    `shard` scores its own rows, and every rank gets all of them back in row order."""
    rows = shard.rows(np.arange(len(data)))
    local = torch.from_numpy(
        predict_logits(model, data.ids[rows], batch_size, device, dtype, members)
    )
    if not members:
        return shard.gather(local, len(data))
    return torch.stack([shard.gather(part, len(data)) for part in local])


def fit_blend(model: nn.Module, member_logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Fit how an ensemble weighs its Naive-Bayes branch against its networks (`blend`): a
    logistic regression of `labels` on the two logits, given the members' logits [M, N] of the
    validation rows, the only rows neither part has trained on."""
    features = torch.stack([member_logits[:-1].mean(0), member_logits[-1]], dim=1)
    fitted = LogisticRegression().fit(features.double().numpy(), labels.numpy() > 0.5)
    blend = [*fitted.coef_[0], fitted.intercept_[0]]
    model.blend.copy_(torch.tensor(blend, dtype=model.blend.dtype))


def validate(
    model: nn.Module,
    data: Split,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    shard: Shard = SINGLE,
) -> tuple[float, float]:
    """Mean BCE loss and accuracy of `model` on the validation split `data`, in one pass over it.
    An ensemble with a Naive-Bayes branch first fits its blend on the members' logits of that pass
    (`fit_blend`). With a `shard`, all ranks compute the same figures from the gathered logits."""
    if getattr(model, "naive_bayes", None) is None:
        logits = gathered_logits(model, data, batch_size, device, dtype, shard)
    else:
        members = gathered_logits(model, data, batch_size, device, dtype, shard, members=True)
        fit_blend(model, members, data.labels)
        logits = model.combine(members.to(model.blend.device)).cpu()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, data.labels).item()
    accuracy = ((logits > 0) == (data.labels > 0.5)).float().mean().item()
    return loss, accuracy


def require_finite(
    loss: float, where: str, clip_grad_norm: float | None, dtype: torch.dtype
) -> None:
    """Stop with a one-line `UserError` on a NaN or infinite loss: weights that diverged would
    otherwise train on as NaN, be saved and be served as such."""
    if math.isfinite(loss):
        return
    fixes = ["lower train.lr"]
    if clip_grad_norm is None:
        fixes.append("set train.clip_grad_norm (e.g. 1.0)")
    if dtype != torch.float32:
        fixes.append("set train.precision: float32")
    raise UserError(f"the {where} is {loss}: the weights diverged; {', or '.join(fixes)}")


def make_optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """The optimizer `params` names. Adam runs fused (one kernel over all weights): the update of
    large embedding tables would otherwise take a sixth of each step on a CPU."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=params.lr, momentum=0.9, weight_decay=params.weight_decay
        )
    optimizer = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    return optimizer(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)


def make_schedule(
    optimizer: torch.optim.Optimizer, params: TrainParams, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate per step: constant, or decaying linearly to zero at the last planned
    epoch, which settles the weights into a better minimum than a constant rate stops at."""
    if params.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    total = params.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    params: TrainParams,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
    shard: Shard = SINGLE,
) -> tuple[list[EpochStats], int]:
    """Train with early stopping; load the best epoch's weights back: the lowest validation loss,
    or with `params.monitor: val_accuracy` the highest validation accuracy.

    With a `shard` of several ranks, every rank draws the same batch plan from `seed`, trains on
    its rows of each batch in DistributedDataParallel and takes the same early-stopping decisions.
    Returns the per-epoch statistics and the best epoch (1-based).
    """
    require_precision(params.precision, device)
    model.to(device)
    trained = shard.wrap(model, device)  # the model itself in a single process
    optimizer = make_optimizer(model, params)
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(train) // params.batch_size)
    schedule = make_schedule(optimizer, params, steps_per_epoch)
    history: list[EpochStats] = []
    dtype = getattr(torch, params.precision)
    best_score, best_epoch, best_state = float("inf"), 0, None
    for epoch in progress(range(1, params.epochs + 1), desc="epochs", unit="epoch"):
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(
            trained, train, params, rng, optimizer, schedule, device, f"epoch {epoch}", shard
        )
        eval_batch = max(params.batch_size, 256)
        val_loss, val_acc = validate(model, val, eval_batch, device, dtype, shard)
        require_finite(val_loss, f"validation loss of epoch {epoch}", params.clip_grad_norm, dtype)
        stats = EpochStats(
            epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - start
        )
        history.append(stats)
        on_epoch(stats)
        score = val_loss if params.monitor == "val_loss" else -val_acc  # lower is better
        if score < best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= params.patience:
            break
    model.load_state_dict(best_state)
    return history, best_epoch


def refit_branch(
    model: nn.Module, data: Split, params: TrainParams, seed: int, device: torch.device, epochs: int
) -> float:
    """Count the n-grams of `model`'s Naive-Bayes branch again on `data`, every training review,
    the validation split's included, and train its weights afresh on them for `epochs` epochs:
    what validation chose (the epoch, the blend) stays, and the branch, which gains most from
    more reviews, learns from the tenth that validation held out. No rows are left to measure it
    on, so its validation metrics are those of the model before. Returns the seconds it took.

    Every rank of a distributed training refits alike on its own, so they end the same."""
    start = time.perf_counter()
    branch = model.naive_bayes
    with torch.no_grad():
        branch.weight.zero_()
        branch.bias.zero_()
    branch.learn(data.ids, data.labels, getattr(branch, "roles", None))
    optimizer = make_optimizer(branch, params)
    steps_per_epoch = -(-len(data) // params.batch_size)
    schedule = make_schedule(optimizer, params, steps_per_epoch)
    rng = np.random.default_rng(seed)
    for epoch in progress(range(1, epochs + 1), desc="refit branch", unit="epoch"):
        train_epoch(branch, data, params, rng, optimizer, schedule, device, f"refit, epoch {epoch}")
    return time.perf_counter() - start
