from __future__ import annotations

import pytest

from rnn_sentiment import cli, presets
from rnn_sentiment.errors import UserError
from rnn_sentiment.params import Params


def test_presets_override_only_their_keys() -> None:
    best = presets.apply(Params(), "best")
    assert best.train.model.members == 3
    assert best.pad.maxlen == 1000
    assert best.train.model.cell == Params().train.model.cell
    assert best.train.optimizer == Params().train.optimizer
    assert presets.apply(Params(), "default") == Params()


def test_every_preset_is_valid() -> None:
    for name in presets.PRESETS:
        presets.apply(Params(), name)


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown preset 'fast'; choose one of tutorial, default"):
        presets.apply(Params(), "fast")


def test_cli_prints_dvc_set_param_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["preset", "tutorial"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[::2] == ["-S"] * len(presets.PRESETS["tutorial"])
    assert printed[1::2][:3] == [
        "pad.maxlen=150",
        "train.model.cell=rnn",
        "train.model.hidden_dim=256",
    ]
