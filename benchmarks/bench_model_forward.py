"""Training-step time of SentimentRNN against a plain torch recurrent module on a padded batch.

The plain baseline (embedding, `nn.RNN/GRU/LSTM`, last step, linear) is what a padded batch costs
when padding is simply fed through; SentimentRNN should cost about the same while being exact.
Rounds alternate between the models so that load from other processes hits them alike.

    PYTHONPATH=src python benchmarks/bench_model_forward.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnn_sentiment.models import PAD_ID, ModelConfig, SentimentRNN

VOCAB, EMBEDDING, HIDDEN, BATCH, STEPS = 10_002, 100, 256, 32, 150
LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class Plain(nn.Module):
    """The naive model: padding runs through the recurrence, the logit reads the last column."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBEDDING, padding_idx=PAD_ID)
        self.rnn = LAYERS[cell](EMBEDDING, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.rnn(self.embedding(ids))[0][:, -1]).squeeze(-1)


def batches() -> dict[str, Tensor]:
    """Both with a longest row of STEPS, so trimming saves nothing and only overhead shows."""
    full = torch.randint(2, VOCAB, (BATCH, STEPS))
    mixed = full.clone()
    for row, length in enumerate(torch.randint(20, STEPS + 1, (BATCH,)).tolist()):
        mixed[row, : STEPS - length] = PAD_ID  # pre-padding, as Keras pads by default
    mixed[0] = full[0]
    return {"full rows": full, "mixed, pre-padded": mixed}


def step_timer(model: nn.Module, ids: Tensor) -> Callable[[], float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.randint(0, 2, (ids.size(0),)).float()

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(ids), target)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {args.threads} threads, B={BATCH} T={STEPS}, ms/step")
    print(f"{'cell':5} {'batch':18} {'plain':>7} {'last':>7} {'mean':>7} {'last/pl':>8} {'mean/pl':>8}")
    for cell in LAYERS:
        for batch_name, ids in batches().items():
            models = {"plain": Plain(cell)}
            for pooling in ("last", "mean"):
                config = ModelConfig(vocab_size=VOCAB, cell=cell, pooling=pooling)
                models[pooling] = SentimentRNN(config)
            steps = {name: step_timer(model.train(), ids) for name, model in models.items()}
            times: dict[str, list[float]] = {name: [] for name in steps}
            for step in steps.values():
                step()  # warm-up
            for _ in range(args.rounds):
                for name, step in steps.items():
                    times[name] += [step() for _ in range(args.steps_per_round)]
            ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
            print(
                f"{cell:5} {batch_name:18} {ms['plain']:7.1f} {ms['last']:7.1f} {ms['mean']:7.1f}"
                f" {ms['last'] / ms['plain']:8.3f} {ms['mean'] / ms['plain']:8.3f}"
            )


if __name__ == "__main__":
    main()
