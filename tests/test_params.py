from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rnn_sentiment import params
from rnn_sentiment.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load_with_the_official_source() -> None:
    loaded = params.load(REPO / "params.yaml")
    assert loaded.tokenize.max_features == 10_000
    assert loaded.pad.maxlen == 400
    assert loaded.download.url == params.OFFICIAL_URL
    assert loaded.download.sha256 == params.OFFICIAL_SHA256


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pad": {"maxlen": 0}}, r"pad\.maxlen: .*greater than or equal to 1.*got 0"),
        ({"pad": {"maxlen": -3}}, r"pad\.maxlen"),
        ({"tokenize": {"max_features": -5}}, r"tokenize\.max_features: .*got -5"),
        (
            {"pad": {"padding": "middle"}},
            r"pad\.padding: Input should be 'pre' or 'post'.*'middle'",
        ),
        ({"pad": {"maxlen": "long"}}, r"pad\.maxlen: .*valid integer"),
        ({"pad": {"max_len": 150}}, r"unknown key 'pad\.max_len'; allowed here: maxlen, padding"),
        ({"trian": {}}, r"unknown key 'trian'; allowed here: base, download"),
        (
            {"train": {"model": {"cel": "gru"}}},
            r"unknown key 'train\.model\.cel'; allowed here: bidir",
        ),
        ({"download": {"sha256": "abc"}}, r"download\.sha256: String should match pattern"),
        (
            {"train": {"lr": float("inf")}},
            r"train\.lr: Input should be a finite number \(got inf\)",
        ),
        (
            {"train": {"lr": float("nan")}},
            r"train\.lr: Input should be a finite number \(got nan\)",
        ),
        ({"train": {"weight_decay": float("nan")}}, r"train\.weight_decay: .*finite number"),
        ({"train": {"clip_grad_norm": float("inf")}}, r"train\.clip_grad_norm: .*finite number"),
        ({"train": {"model": {"dropout": float("nan")}}}, r"train\.model\.dropout: .*finite"),
        ({"evaluate": {"threshold": float("nan")}}, r"evaluate\.threshold: .*finite number"),
        ({"base": {"memory_budget_gb": float("inf")}}, r"base\.memory_budget_gb: .*finite"),
        ({"base": {"memory_budget_gb": 0}}, r"base\.memory_budget_gb: .*greater than 0"),
        ({"base": {"seed": 2**32}}, r"base\.seed: Input should be less than 4294967296"),
        ({"base": {"seed": -1}}, r"base\.seed: Input should be greater than or equal to 0"),
        ({"train": {"model": {"num_layers": True}}}, r"train\.model\.num_layers: .*valid integer"),
        ({"train": {"model": {"bidirectional": "yes"}}}, r"train\.model\.bidirectional: .*boolean"),
        (
            {"train": {"model": {"head_layers": [8, 0]}}},
            r"train\.model\.head_layers\.1: .*or equal",
        ),
    ],
)
def test_invalid_params_fail_with_one_line_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        params.parse(raw)
    assert "\n" not in str(info.value)


def test_non_finite_numbers_in_the_file_are_refused(tmp_path: Path) -> None:
    for text, key in [
        ("train:\n  lr: .inf\n", "train.lr"),
        ("pad:\n  maxlen: .nan\n", "pad.maxlen"),
    ]:
        path = tmp_path / "params.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=rf"{key}: .*(finite|valid integer).*fix it in"):
            params.load(path)


def test_the_largest_seed_numpy_takes_is_accepted() -> None:
    assert params.parse({"base": {"seed": 2**32 - 1}}).base.seed == 2**32 - 1


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        params.load(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pad: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        params.load(broken)


def test_every_param_is_declared_by_a_stage() -> None:
    """A key no stage declares would change the results without `dvc repro` noticing. (The
    validate stage tracks the whole file, `- params.yaml:`, but produces no result.)"""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    declared = {
        key
        for stage in pipeline["stages"].values()
        for key in stage.get("params", [])
        if isinstance(key, str)
    }
    assert set(params.flatten(params.load(REPO / "params.yaml"))) - declared == set()


def test_flatten_uses_dotted_keys() -> None:
    flat = params.flatten(params.Params())
    assert flat["tokenize.max_features"] == 10_000
    assert flat["train.model.cell"] == "gru"
    assert flat["train.model.input_layers"] == []
