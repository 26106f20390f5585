"""Training-step time of SentimentRNN against a plain torch recurrent module on a padded batch.

The plain baseline (embedding, `nn.RNN/GRU/LSTM`, last step, linear) is what a padded batch costs
when padding is simply fed through; SentimentRNN should cost about the same while being exact.
Rounds alternate between the models so that load from other processes hits them alike; still, run
it on an idle machine: with more threads than free cores, OpenMP waits make steps 3x-30x slower.

    PYTHONPATH=src python benchmarks/bench_model_forward.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnn_sentiment.models import ModelConfig, SentimentRNN
from rnn_sentiment.text import PAD_ID

VOCAB, EMBEDDING, HIDDEN, BATCH, STEPS = 10_002, 100, 256, 32, 150
LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
HEADER = ("plain", "last", "mean", "last/pl", "mean/pl")


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
    """The first two have a row of STEPS tokens, so trimming saves nothing: only overhead shows.

    The third, whose longest row is 80 tokens, shows what trimming the padding columns saves.
    """
    full = torch.randint(2, VOCAB, (BATCH, STEPS))
    pre, post = full.clone(), full.clone()
    for row, length in enumerate(torch.randint(20, STEPS + 1, (BATCH,)).tolist()):
        pre[row, : STEPS - length] = PAD_ID
        post[row, min(length, 80) :] = PAD_ID
    pre[0] = full[0]
    return {"full rows": full, "mixed, pre-padded": pre, "post-padded, longest 80": post}


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
    print(f"{'cell':5} {'batch':24}" + "".join(f"{h:>8}" for h in HEADER))
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
            ratios = [ms[name] / ms["plain"] for name in ("last", "mean")]
            cells = [f"{ms[name]:8.1f}" for name in steps] + [f"{r:8.3f}" for r in ratios]
            print(f"{cell:5} {batch_name:24}" + "".join(cells))


if __name__ == "__main__":
    main()
