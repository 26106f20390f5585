from __future__ import annotations

import numpy as np
import pytest

from rnn_sentiment import bptt


@pytest.mark.parametrize("mode", bptt.MODES)
@pytest.mark.parametrize(
    ("steps", "n_in", "n_hidden", "n_out"), [(1, 2, 3, 2), (2, 3, 5, 2), (17, 4, 6, 3)]
)
def test_bptt_matches_autograd(mode: str, steps: int, n_in: int, n_hidden: int, n_out: int) -> None:
    w, x, y = bptt.random_problem(steps, n_in, n_hidden, n_out, steps)
    ours = bptt.backward(w, bptt.forward(w, x), y, mode)
    theirs = bptt.autograd_gradients(w, x, y, mode)
    for name, grad in ours.named().items():
        assert grad.shape == getattr(w, name).shape
        assert bptt.relative_error(grad, getattr(theirs, name)) < 1e-10, name


@pytest.mark.parametrize("mode", bptt.MODES)
def test_finite_differences_agree(mode: str) -> None:
    errors = bptt.gradient_check(seed=3, steps=5, mode=mode)
    assert set(errors) == {"W_xh", "W_hh", "b_h", "W_o", "b_o"}
    assert max(numeric for _, numeric in errors.values()) < 1e-7


def test_last_step_mode_ignores_earlier_targets() -> None:
    w, x, y = bptt.random_problem(0, 2, 3, 2, 4)
    other = y.copy()
    other[:3] = other[:3, ::-1]  # change every target but the last
    fwd = bptt.forward(w, x)
    assert bptt.loss(fwd, y, "last_step") == bptt.loss(fwd, other, "last_step")
    assert bptt.loss(fwd, y, "every_step") != bptt.loss(fwd, other, "every_step")
    assert np.allclose(
        bptt.backward(w, fwd, y, "last_step").W_hh, bptt.backward(w, fwd, other, "last_step").W_hh
    )


def test_a_broken_gradient_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check must fail when BPTT drops the recurrent term W_hh^T δ_{t+1}."""

    def truncated(w, fwd, dv):
        return (dv @ w.W_o) * (1.0 - fwd.h[1:] ** 2)

    monkeypatch.setattr(bptt, "deltas", truncated)
    assert bptt.check_main(["--steps", "4"]) == 1


def test_check_prints_a_table_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert bptt.check_main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("max relative error: ")
    assert float(lines[-1].split(": ")[1]) < bptt.TOLERANCE
    assert len(lines) == 1 + 2 * 5 + 1


def test_demo_loss_falls_and_parity_is_learned() -> None:
    losses, accuracy = bptt.train_parity(epochs=150)
    assert losses[-1] < 0.2 * losses[0]
    assert accuracy > 0.9


def test_demo_prints_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert bptt.demo_main(["--epochs", "20"]) == 0
    out = capsys.readouterr().out
    for name in ("u_t", "h_t", "v_t", "y*_t", "δ_t"):
        assert out.count(f"  {name} ") == 3


@pytest.mark.parametrize(
    ("x", "y", "mode", "message"),
    [
        (
            np.zeros((3, 5)),
            np.eye(2)[[0, 1, 0]],
            "every_step",
            r"x must have shape \[T >= 1, n_in=2\], got \(3, 5\)",
        ),
        (np.zeros((0, 2)), np.zeros((0, 2)), "every_step", "T >= 1"),
        (
            np.zeros((3, 2)),
            np.eye(2)[[0, 1]],
            "every_step",
            r"targets y must have shape \[T, K\]=\(3, 2\)",
        ),
        (np.zeros((3, 2)), np.full((3, 2), 0.5), "every_step", "one-hot"),
        (
            np.zeros((3, 2)),
            np.eye(2)[[0, 1, 0]],
            "sometimes",
            "mode must be one of every_step, last_step",
        ),
    ],
)
def test_shapes_and_modes_are_validated(x, y, mode, message) -> None:
    w = bptt.Weights.init(2, 3, 2)
    with pytest.raises(ValueError, match=message):
        bptt.loss(bptt.forward(w, x), y, mode)
