"""The behaviour suite (benchmarks/behaviour.py): template expansion, sentence cutting, and the
failure rates it reports for keyword scorers whose mistakes are known in advance; then the
script end to end on a tiny trained model and the TF-IDF baseline."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import behaviour
from benchmarks.behaviour_templates import NEGATIVE, NEUTRAL, POSITIVE
from rnn_sentiment.params import ModelParams, PadParams, Params, TrainParams
from rnn_sentiment.stages import train
from tests.conftest import build_archive, sha256, synthetic_padded

NEGATION = re.compile(r"\bnot\b|n't\b")


class KeywordScorer:
    """Counts positive against negative adjectives: 1, 0, or 0.5 on a tie. With `negation`, any
    "not" or "n't" in the text flips the verdict; without, negation goes unseen."""

    def __init__(self, negation: bool) -> None:
        self.negation = negation
        self.calls: list[list[str]] = []

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls.append(texts)
        return np.array([self._score(text) for text in texts])

    def _score(self, text: str) -> float:
        words = re.findall(r"\w+", text.lower())
        balance = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
        if self.negation and NEGATION.search(text):
            balance = -balance
        return 0.5 + 0.5 * float(np.sign(balance))


def adjectives(text: str) -> list[str]:
    return [word for word in re.findall(r"\w+", text) if word in POSITIVE + NEGATIVE]


# What each scorer must fail, all or nothing, by its rule. A tie (one adjective each way, in the
# contrast tests) scores 0.5, which reads as positive.
MUST_FAIL = {
    "positive adjective → positive": (False, False),
    "negative adjective → negative": (False, False),
    "negated positive → negative": (True, False),
    "negated negative scores above the plain negative": (True, False),
    "negated negative → positive (contested: 'not bad' is not praise)": (True, False),
    "expected positive, it wasn't → negative": (True, False),
    "expected negative, it wasn't → positive": (True, False),
    "negative part, positive overall → positive": (False, False),
    "positive part, negative overall → negative": (True, True),
    "neutral fact appended: label kept": (False, False),
}


@pytest.mark.parametrize("negation", [False, True], ids=["blind to negation", "reads negation"])
def test_keyword_scorers_fail_exactly_the_tests_their_rule_fails(negation: bool) -> None:
    rates = behaviour.failure_rates(behaviour.template_tests(), KeywordScorer(negation))
    assert rates == {name: float(fails[negation]) for name, fails in MUST_FAIL.items()}


def test_every_distinct_text_is_scored_once_in_one_call() -> None:
    tests = behaviour.template_tests()
    scorer = KeywordScorer(negation=False)
    behaviour.failure_rates(tests, scorer)
    everything = {t for test in tests for t in (*test.texts, *test.references)}
    assert len(scorer.calls) == 1
    assert sorted(scorer.calls[0]) == sorted(everything)


def test_a_partial_failure_is_reported_as_a_fraction() -> None:
    test = behaviour.Test("mixed", "MFT", ("a", "b", "c", "d"), expected=(1, 1, 0, 0))
    probability = {"a": 0.9, "b": 0.2, "c": 0.5, "d": 0.1}  # b and c are wrong; 0.5 is positive
    assert test.failures(probability).tolist() == [False, True, True, False]


def test_expand_fills_every_combination_in_order() -> None:
    assert behaviour.expand(
        "The {part} was {adj}; the {part} mattered.", part=["plot", "music"], adj=["good", "bad"]
    ) == [
        "The plot was good; the plot mattered.",
        "The plot was bad; the plot mattered.",
        "The music was good; the music mattered.",
        "The music was bad; the music mattered.",
    ]
    with pytest.raises(ValueError, match="no words for adj"):
        behaviour.expand("It was {adj}.", part=["plot"])


def test_expand_puts_an_before_a_vowel() -> None:
    assert behaviour.expand("A {adj} film, a {adj} end.", adj=["awful", "good"]) == [
        "An awful film, an awful end.",
        "A good film, a good end.",
    ]
    assert behaviour.expand("It is a {part}.", part=["drama", "upbeat film"]) == [
        "It is a drama.",
        "It is an upbeat film.",
    ]


def test_templated_tests_pair_each_text_with_its_reference() -> None:
    tests = {test.name: test for test in behaviour.template_tests()}
    direction = tests["negated negative scores above the plain negative"]
    for negated, plain in zip(direction.texts, direction.references, strict=True):
        assert adjectives(negated) == adjectives(plain)
        assert " not " in negated and " not " not in plain
    invariance = tests["neutral fact appended: label kept"]
    assert len(invariance.texts) == 2 * len(POSITIVE) * 4 * len(NEUTRAL)
    for appended, plain in zip(invariance.texts, invariance.references, strict=True):
        assert appended.startswith(plain + " ") and appended.removeprefix(plain + " ") in NEUTRAL


def test_a_test_refuses_texts_without_their_labels() -> None:
    with pytest.raises(ValueError, match="2 texts, 1 to compare"):
        behaviour.Test("broken", "INV", ("a", "b"), references=("a",))


def test_sentence_tests_cut_first_and_last_sentences_of_test_reviews() -> None:
    reviews = pd.DataFrame(
        {
            "split": ["test", "test", "test", "train"],
            "label": [1, 1, 0, 0],
            "text": [
                "A fine film!<br /><br />The cast? Superb. I wept.",
                "One sentence only, so no first and last",
                "Dull from start to end... Avoid it.<br />",
                "Train reviews are never cut. Never.",
            ],
        }
    )
    first, last, appended = behaviour.sentence_tests(reviews, count=10)
    assert sorted(zip(first.texts, last.texts, first.expected, strict=True)) == [
        ("A fine film!", "I wept.", 1),
        ("Dull from start to end...", "Avoid it.", 0),
    ]
    assert last.expected == first.expected and appended.references == first.texts
    assert [
        text.removeprefix(ref + " ") in NEUTRAL
        for text, ref in zip(appended.texts, appended.references, strict=True)
    ] == [True, True]


def test_table_has_a_row_per_test_and_a_column_per_system() -> None:
    tests = behaviour.template_tests()[:2]
    results = {"a": {t.name: 0.25 for t in tests}, "b": {t.name: 1.0 for t in tests}}
    assert behaviour.table(tests, results).splitlines() == [
        "| test | check | n | a | b |",
        "|---|---|---|---|---|",
        f"| positive adjective → positive | MFT | {len(tests[0].texts)} | 25.0% | 100.0% |",
        f"| negative adjective → negative | MFT | {len(tests[1].texts)} | 25.0% | 100.0% |",
    ]


def test_script_tests_a_trained_model_and_tfidf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays, tokenizer = synthetic_padded(per_class=24)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    tiny = TrainParams(model=ModelParams(embedding_dim=8, hidden_dim=8), epochs=2, batch_size=8)
    result = train.run(tiny, 0, arrays, tokenizer, torch.device("cpu"))
    params = Params(pad=PadParams(maxlen=24), train=tiny)
    train.write_model_dir(tmp_path / "models", result.model, params, tmp_path / "tokenizer.json")
    archive = build_archive(tmp_path / "tiny.tar.gz")
    argv = ["--model", f"tiny={tmp_path / 'models'}", "--archive", str(archive)]
    assert behaviour.main([*argv, "--sha256", sha256(archive)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| test | check | n | TF-IDF + logistic regression | tiny |"
    assert len(rows) == 1 + len(behaviour.template_tests()) + 3
    assert all(
        re.fullmatch(r"\| .+ \| (MFT|INV|DIR) \| \d+ \| [\d.]+% \| [\d.]+% \|", row)
        for row in rows[1:]
    )


def test_script_names_a_missing_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert behaviour.main(["--model", f"gone={tmp_path / 'nothing'}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no model at {tmp_path / 'nothing'}")
