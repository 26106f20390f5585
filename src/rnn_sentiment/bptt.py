"""A vanilla RNN with back-propagation through time written out by hand, in NumPy.

This is the reference for what `nn.RNN` and autograd do inside the pipeline, following the
tutorial's equations line by line (f = tanh, g = softmax over K >= 2 outputs):

    u_t = W_xh x_t + W_hh h_{t-1} + b_h      h_t = f(u_t)      h_0 = 0
    v_t = W_o h_t + b_o                      y*_t = g(v_t)     L = Σ_t L_t,  L_t = -y_t^T ln y*_t

With `mode="every_step"` every step has a target (sequence labelling); with `mode="last_step"`
only L_T counts (classification, as in sentiment analysis). `rnn-sentiment bptt-check` compares
the hand-written gradients with PyTorch autograd and with finite differences;
`rnn-sentiment bptt-demo` prints the tutorial's worked example and trains on a memory task.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np

Mode = Literal["every_step", "last_step"]
MODES: tuple[str, ...] = ("every_step", "last_step")
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Weights:
    """The network's parameters (or, from `backward`, their gradients), named as equations do."""

    W_xh: np.ndarray  # [H, I]
    W_hh: np.ndarray  # [H, H]
    b_h: np.ndarray  # [H]
    W_o: np.ndarray  # [K, H]
    b_o: np.ndarray  # [K]

    @classmethod
    def init(
        cls, n_in: int, n_hidden: int, n_out: int, seed: int = 0, scale: float = 0.5
    ) -> Weights:
        rng = np.random.default_rng(seed)
        return cls(
            W_xh=rng.normal(0, scale, (n_hidden, n_in)),
            W_hh=rng.normal(0, scale, (n_hidden, n_hidden)),
            b_h=rng.normal(0, scale, n_hidden),
            W_o=rng.normal(0, scale, (n_out, n_hidden)),
            b_o=rng.normal(0, scale, n_out),
        )

    def named(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Forward:
    """Every intermediate of the forward pass, kept for the backward pass."""

    x: np.ndarray  # [T, I]
    u: np.ndarray  # [T, H]
    h: np.ndarray  # [T + 1, H]; h[0] = h_0 = 0, h[t] = h_t
    v: np.ndarray  # [T, K]
    y_hat: np.ndarray  # [T, K]


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(w: Weights, x: np.ndarray) -> Forward:
    """Unroll the network over the sequence `x` of shape [T, n_in]."""
    n_hidden, n_in = w.W_xh.shape
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_in or len(x) == 0:
        raise ValueError(f"x must have shape [T >= 1, n_in={n_in}], got {x.shape}")
    steps = len(x)
    u = np.zeros((steps, n_hidden))
    h = np.zeros((steps + 1, n_hidden))
    for t in range(1, steps + 1):  # 1-based t as in the equations; row t-1 of x, u, v
        u[t - 1] = (
            w.W_xh @ x[t - 1] + w.W_hh @ h[t - 1] + w.b_h
        )  # u_t = W_xh x_t + W_hh h_{t-1} + b_h
        h[t] = np.tanh(u[t - 1])  # h_t = f(u_t)
    v = h[1:] @ w.W_o.T + w.b_o  # v_t = W_o h_t + b_o
    return Forward(x=x, u=u, h=h, v=v, y_hat=softmax(v))  # y*_t = g(v_t)


def _check_targets(fwd: Forward, y: np.ndarray, mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    y = np.asarray(y, dtype=np.float64)
    if y.shape != fwd.y_hat.shape:
        raise ValueError(f"targets y must have shape [T, K]={fwd.y_hat.shape}, got {y.shape}")
    if not (np.isin(y, (0.0, 1.0)).all() and (y.sum(axis=1) == 1).all()):
        raise ValueError("targets y must be one-hot rows (a single 1 per step)")
    return y


def _counted(steps: int, mode: str) -> np.ndarray:
    """1 for the steps whose loss L_t counts, 0 for the others."""
    mask = np.ones(steps) if mode == "every_step" else np.eye(steps)[-1]
    return mask[:, None]


def loss(fwd: Forward, y: np.ndarray, mode: Mode = "every_step") -> float:
    """L = Σ_t L_t with L_t = -y_t^T ln y*_t, over every step or the last one only."""
    y = _check_targets(fwd, y, mode)
    per_step = -(y * np.log(fwd.y_hat)).sum(axis=1, keepdims=True)  # L_t
    return float((per_step * _counted(len(y), mode)).sum())


def output_error(fwd: Forward, y: np.ndarray, mode: Mode = "every_step") -> np.ndarray:
    """∇_{v_t} L for every step ([T, K]): y*_t - y_t where L_t counts, 0 elsewhere."""
    y = _check_targets(fwd, y, mode)
    return (fwd.y_hat - y) * _counted(len(y), mode)  # ∇_{v_t} L_t = y*_t - y_t


def deltas(w: Weights, fwd: Forward, dv: np.ndarray) -> np.ndarray:
    """The error terms δ_1..δ_T ([T, H]), computed backwards from t = T."""
    delta = np.zeros_like(fwd.u)
    delta_next = np.zeros(w.W_hh.shape[0])  # δ_{T+1} = 0
    for t in range(len(dv), 0, -1):
        f_prime = 1.0 - fwd.h[t] ** 2  # f'(u_t) = 1 - tanh²(u_t)
        # δ_t = (W_o^T (y*_t - y_t)) ⊙ f'(u_t) + (W_hh^T δ_{t+1}) ⊙ f'(u_t)
        delta[t - 1] = (w.W_o.T @ dv[t - 1]) * f_prime + (w.W_hh.T @ delta_next) * f_prime
        delta_next = delta[t - 1]
    return delta


def backward(w: Weights, fwd: Forward, y: np.ndarray, mode: Mode = "every_step") -> Weights:
    """Gradients of `loss` with respect to every weight, by back-propagation through time."""
    dv = output_error(fwd, y, mode)
    delta = deltas(w, fwd, dv)
    return Weights(
        W_xh=delta.T @ fwd.x,  # ∇W_xh = Σ_t δ_t x_t^T
        W_hh=delta.T @ fwd.h[:-1],  # ∇W_hh = Σ_t δ_t h_{t-1}^T
        b_h=delta.sum(axis=0),  # ∇b_h = Σ_t δ_t
        W_o=dv.T @ fwd.h[1:],  # ∇W_o = Σ_t (y*_t - y_t) h_t^T
        b_o=dv.sum(axis=0),  # ∇b_o = Σ_t (y*_t - y_t)
    )


def sgd_step(w: Weights, grads: Weights, lr: float) -> Weights:
    """Plain gradient descent: θ ← θ - lr ∇θ."""
    return Weights(**{name: value - lr * getattr(grads, name) for name, value in w.named().items()})


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a - b‖ / (‖a‖ + ‖b‖): scale-free, and not fooled by entries that are both near zero."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def autograd_gradients(w: Weights, x: np.ndarray, y: np.ndarray, mode: Mode) -> Weights:
    """The same network and loss written with torch ops (float64), differentiated by autograd."""
    import torch

    params = {name: torch.tensor(value, requires_grad=True) for name, value in w.named().items()}
    xs, ys = (
        torch.tensor(np.asarray(x, dtype=np.float64)),
        torch.tensor(np.asarray(y, dtype=np.float64)),
    )
    h = torch.zeros(w.W_hh.shape[0], dtype=torch.float64)
    losses = []
    for t in range(len(xs)):
        h = torch.tanh(params["W_xh"] @ xs[t] + params["W_hh"] @ h + params["b_h"])
        log_y_hat = torch.log_softmax(params["W_o"] @ h + params["b_o"], dim=0)
        losses.append(-(ys[t] * log_y_hat).sum())
    total = sum(losses) if mode == "every_step" else losses[-1]
    total.backward()
    return Weights(**{name: p.grad.numpy() for name, p in params.items()})


def numerical_gradients(
    w: Weights, x: np.ndarray, y: np.ndarray, mode: Mode, eps: float = 1e-5
) -> Weights:
    """Central finite differences, (L(θ + ε) - L(θ - ε)) / 2ε, one weight at a time."""
    grads = {}
    for name, value in w.named().items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = []
            for sign in (1, -1):
                moved = value.copy()
                moved[index] += sign * eps
                shifted.append(loss(forward(replace(w, **{name: moved}), x), y, mode))
            grad[index] = (shifted[0] - shifted[1]) / (2 * eps)
        grads[name] = grad
    return Weights(**grads)


def random_problem(
    seed: int, n_in: int, n_hidden: int, n_out: int, steps: int
) -> tuple[Weights, np.ndarray, np.ndarray]:
    """Random weights, a random input sequence and random one-hot targets."""
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(steps, n_in))
    y = np.eye(n_out)[rng.integers(0, n_out, size=steps)]
    return Weights.init(n_in, n_hidden, n_out, seed), x, y


def gradient_check(
    seed: int = 0,
    n_in: int = 3,
    n_hidden: int = 5,
    n_out: int = 2,
    steps: int = 6,
    mode: Mode = "every_step",
) -> dict[str, tuple[float, float]]:
    """Per parameter: relative error of the hand-written BPTT against autograd and against finite
    differences."""
    w, x, y = random_problem(seed, n_in, n_hidden, n_out, steps)
    ours = backward(w, forward(w, x), y, mode)
    torch_grads = autograd_gradients(w, x, y, mode)
    numeric = numerical_gradients(w, x, y, mode)
    return {
        name: (
            relative_error(value, getattr(torch_grads, name)),
            relative_error(value, getattr(numeric, name)),
        )
        for name, value in ours.named().items()
    }


def check_main(argv: list[str] | None = None) -> int:
    """Compare hand-written BPTT gradients with autograd and finite differences."""
    parser = argparse.ArgumentParser(
        prog="rnn-sentiment bptt-check", description=check_main.__doc__
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    args = parser.parse_args(argv)
    modes = MODES if args.mode == "both" else (args.mode,)
    print(f"{'mode':<11} {'parameter':<9} {'vs autograd':>12} {'vs finite diff':>15}")
    worst = 0.0
    for mode in modes:
        errors = gradient_check(args.seed, n_hidden=args.hidden, steps=args.steps, mode=mode)
        for name, (vs_torch, vs_numeric) in errors.items():
            print(f"{mode:<11} {name:<9} {vs_torch:>12.2e} {vs_numeric:>15.2e}")
            worst = max(worst, vs_torch, vs_numeric)
    print(f"max relative error: {worst:.2e}")
    return 0 if worst <= TOLERANCE else 1


def parity_data(n_sequences: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random bit sequences ([N, T, 2] one-hot) and, per step, whether the count of 1s so far is
    odd ([N, T, 2] one-hot): the answer depends on every earlier input, so it needs memory."""
    bits = np.random.default_rng(seed).integers(0, 2, size=(n_sequences, steps))
    return np.eye(2)[bits], np.eye(2)[np.cumsum(bits, axis=1) % 2]


def train_parity(
    seed: int = 0,
    epochs: int = 300,
    lr: float = 0.3,
    hidden: int = 8,
    steps: int = 4,
    n_sequences: int = 64,
) -> tuple[list[float], float]:
    """Full-batch gradient descent on the parity task; returns the mean loss per epoch and the
    final per-step accuracy."""
    xs, ys = parity_data(n_sequences, steps, seed)
    w = Weights.init(2, hidden, 2, seed, scale=1.0)
    losses = []
    for _ in range(epochs):
        total, grads = 0.0, None
        for x, y in zip(xs, ys, strict=True):
            fwd = forward(w, x)
            total += loss(fwd, y)
            g = backward(w, fwd, y)
            grads = (
                g
                if grads is None
                else Weights(**{k: v + getattr(g, k) for k, v in grads.named().items()})
            )
        mean = Weights(**{k: v / n_sequences for k, v in grads.named().items()})
        w = sgd_step(w, mean, lr)
        losses.append(total / n_sequences)
    correct = [
        (forward(w, x).y_hat.argmax(1) == y.argmax(1)).mean() for x, y in zip(xs, ys, strict=True)
    ]
    return losses, float(np.mean(correct))


def demo_main(argv: list[str] | None = None) -> int:
    """The tutorial's worked BPTT example, then training on a memory task."""
    parser = argparse.ArgumentParser(prog="rnn-sentiment bptt-demo", description=demo_main.__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
    with np.printoptions(precision=4, suppress=True):  # local: leave numpy's globals alone
        w = Weights.init(2, 3, 2, seed=0)
        x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        y = np.eye(2)[[0, 1, 1]]
        fwd = forward(w, x)
        print("Worked example: 2 inputs, 3 hidden units, 2 outputs, unrolled over 3 steps")
        for t, delta in enumerate(deltas(w, fwd, output_error(fwd, y)), start=1):
            print(f"t={t}  x_t={x[t - 1]}  y_t={y[t - 1]}")
            print(f"  u_t  = {fwd.u[t - 1]}\n  h_t  = {fwd.h[t]}\n  v_t  = {fwd.v[t - 1]}")
            print(f"  y*_t = {fwd.y_hat[t - 1]}\n  δ_t  = {delta}")
        print(f"L = {loss(fwd, y):.4f}")
        print("\nParity of the running count of 1s, plain gradient descent:")
        losses, accuracy = train_parity(epochs=args.epochs)
        for epoch in sorted({0, *range(49, len(losses), 50), len(losses) - 1}):
            print(f"  epoch {epoch + 1:>4}: loss {losses[epoch]:.4f}")
        print(f"per-step accuracy after training: {accuracy:.1%}")
    return 0
