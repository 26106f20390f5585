"""Behavioural tests of sentiment systems, in the manner of CheckList (Ribeiro et al., ACL 2020).

Accuracy on IMDB says how often a system is right, not what it gets wrong. These tests feed it
short templated sentences that isolate one capability each (benchmarks/behaviour_templates.py),
plus single sentences cut from test reviews, and report each test's failure rate. Three kinds:

- MFT (minimum functionality): each text must get its label ("The film was not good." is
  negative).
- INV (invariance): a text must keep the label of its reference (a review with a neutral fact
  appended keeps its label).
- DIR (direction): a text must score more positive than its reference. This is how "not bad"
  is scored fairly: it need not be praise, but it must read better than "bad". Whether it reads
  as positive is reported too, as a contested MFT, apart from the tests a system must pass.

Systems: trained model folders (`--model NAME=PATH`, scored in float32) and, given the reviews,
TF-IDF + logistic regression fitted on their train split. Prints one markdown table.

    python benchmarks/behaviour.py --model default=models \
        [--reviews data/raw/reviews.parquet | --archive PATH --sha256 HEX] [--sentences 2000]
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import behaviour_templates as templates
from rnn_sentiment.errors import exit_on_user_error
from rnn_sentiment.files import require_file
from rnn_sentiment.text import HTML_TAG

Check = Literal["MFT", "INV", "DIR"]
THRESHOLD = 0.5  # a probability at or above it is a positive label, as in serving
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")  # "a excellent film" -> "an excellent"


class Scorer(Protocol):
    """Anything that gives each text its probability of being positive."""

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Test:
    """One behaviour: texts, and what a system must make of each (see the module's docstring).

    `expected` holds an MFT's labels; `references` the text each INV or DIR text is compared with.
    """

    name: str
    check: Check
    texts: tuple[str, ...]
    expected: tuple[int, ...] = ()
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        paired = self.expected if self.check == "MFT" else self.references
        if len(paired) != len(self.texts):
            raise ValueError(f"{self.name}: {len(self.texts)} texts, {len(paired)} to compare")

    def failures(self, probability: Mapping[str, float]) -> np.ndarray:
        """Whether each text fails, given every text's probability of being positive."""
        p = np.array([probability[text] for text in self.texts])
        if self.check == "MFT":
            return (p >= THRESHOLD) != np.array(self.expected, dtype=bool)
        reference = np.array([probability[text] for text in self.references])
        if self.check == "INV":
            return (p >= THRESHOLD) != (reference >= THRESHOLD)
        return p <= reference


def expand(template: str, **slots: Sequence[str]) -> list[str]:
    """Every filling of `template`'s fields from `slots`; the last field varies fastest. "a"
    before a vowel becomes "an": "It is a {adj} movie." with "excellent" is "It is an excellent
    movie.", as a reviewer writes it, not a text no review holds."""
    fields = list(
        dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name)
    )
    if missing := [name for name in fields if name not in slots]:
        raise ValueError(f"no words for {', '.join(missing)} in {template!r}")
    return [
        A_BEFORE_VOWEL.sub(r"\1n ", template.format(**dict(zip(fields, words, strict=True))))
        for words in product(*(slots[name] for name in fields))
    ]


def expand_all(templates_: Sequence[str], **slots: Sequence[str]) -> list[str]:
    return [text for template in templates_ for text in expand(template, **slots)]


def mft(name: str, texts: Sequence[str], label: int) -> Test:
    return Test(name, "MFT", tuple(texts), expected=(label,) * len(texts))


def template_tests() -> list[Test]:
    """The templated tests: sentiment words, negation, expectations, contrast, a neutral fact."""
    pos, neg = templates.POSITIVE, templates.NEGATIVE
    verdict_neg = expand_all(templates.VERDICT, adj=neg)
    negated_neg = expand_all(templates.NEGATED, adj=neg)  # aligned with verdict_neg, text by text
    verdicts = expand_all(templates.VERDICT, adj=pos) + verdict_neg
    appended = [(f"{text} {fact}", text) for text in verdicts for fact in templates.NEUTRAL]
    return [
        mft("positive adjective → positive", expand_all(templates.VERDICT, adj=pos), 1),
        mft("negative adjective → negative", verdict_neg, 0),
        mft("negated positive → negative", expand_all(templates.NEGATED, adj=pos), 0),
        Test(
            "negated negative scores above the plain negative",
            "DIR",
            tuple(negated_neg),
            references=tuple(verdict_neg),
        ),
        mft("negated negative → positive (contested: 'not bad' is not praise)", negated_neg, 1),
        mft(
            "expected positive, it wasn't → negative", expand_all(templates.EXPECTATION, adj=pos), 0
        ),
        mft(
            "expected negative, it wasn't → positive", expand_all(templates.EXPECTATION, adj=neg), 1
        ),
        mft(
            "negative part, positive overall → positive",
            expand_all(templates.CONTRAST, part=templates.PARTS, first=neg, overall=pos),
            1,
        ),
        mft(
            "positive part, negative overall → negative",
            expand_all(templates.CONTRAST, part=templates.PARTS, first=pos, overall=neg),
            0,
        ),
        Test(
            "neutral fact appended: label kept",
            "INV",
            tuple(text for text, _ in appended),
            references=tuple(reference for _, reference in appended),
        ),
    ]


def sentences(review: str) -> list[str]:
    """A review's sentences, HTML tags removed (split after . ! or ?: rough, but the same for
    every system)."""
    plain = re.sub(HTML_TAG, " ", review)
    return [s for s in (part.strip() for part in SENTENCE_END.split(plain)) if re.search(r"\w", s)]


def sentence_tests(reviews: pd.DataFrame, count: int, seed: int = 0) -> list[Test]:
    """Single sentences of test reviews, each labelled with its review's label.

    Of `count` test reviews (a seeded sample) with two sentences or more: the first sentence, the
    last, and the first with a neutral fact appended. A sentence may carry no sentiment ("I saw
    this in 1985."), so even a perfect reader fails some MFT items: compare systems, not zero.
    """
    test = reviews[reviews["split"] == "test"]
    test = test.sample(min(count, len(test)), random_state=seed)
    pairs = [
        (sentences(text), int(label))
        for text, label in zip(test["text"], test["label"], strict=True)
    ]
    pairs = [(cut, label) for cut, label in pairs if len(cut) >= 2]
    firsts = [cut[0] for cut, _ in pairs]
    labels = tuple(label for _, label in pairs)
    facts = [templates.NEUTRAL[i % len(templates.NEUTRAL)] for i in range(len(firsts))]
    return [
        Test("first sentence of a test review → its label", "MFT", tuple(firsts), labels),
        Test(
            "last sentence of a test review → its label",
            "MFT",
            tuple(cut[-1] for cut, _ in pairs),
            labels,
        ),
        Test(
            "neutral fact appended to a first sentence: label kept",
            "INV",
            tuple(f"{first} {fact}" for first, fact in zip(firsts, facts, strict=True)),
            references=tuple(firsts),
        ),
    ]


def failure_rates(tests: Sequence[Test], scorer: Scorer) -> dict[str, float]:
    """Each test's failure rate; every distinct text is scored once, in one call."""
    texts = list(dict.fromkeys(t for test in tests for t in (*test.texts, *test.references)))
    probability = dict(zip(texts, np.asarray(scorer.predict_proba(texts)).tolist(), strict=True))
    return {test.name: float(test.failures(probability).mean()) for test in tests}


def table(tests: Sequence[Test], results: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table: test | check | n | failure rate of each system."""
    lines = [
        "| test | check | n | " + " | ".join(results) + " |",
        "|---|---|---|" + "---|" * len(results),
    ]
    for test in tests:
        rates = " | ".join(f"{rates[test.name]:.1%}" for rates in results.values())
        lines.append(f"| {test.name} | {test.check} | {len(test.texts)} | {rates} |")
    return "\n".join(lines)


def model_argument(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=model_argument,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a train stage's folder to test, under a name for the table (repeatable)",
    )
    parser.add_argument("--reviews", type=Path, help="the download stage's reviews.parquet")
    parser.add_argument("--archive", type=Path, help="an IMDB archive, read as the pipeline does")
    parser.add_argument("--sha256", help="the archive's digest")
    parser.add_argument(
        "--sentences", type=int, default=2000, help="test reviews to cut sentences from"
    )
    args = parser.parse_args(argv)
    if args.archive and not args.sha256:
        parser.error("--archive needs --sha256")
    if not args.model and not (args.reviews or args.archive):
        parser.error("nothing to test: give --model NAME=PATH, or reviews for the TF-IDF baseline")
    return args


def read_reviews(args: argparse.Namespace) -> pd.DataFrame | None:
    """The reviews table given by --reviews or --archive, if any."""
    from benchmarks.compare import load_reviews

    if args.reviews:
        return pd.read_parquet(require_file(args.reviews), columns=["split", "label", "text"])
    return load_reviews(args.archive, args.sha256) if args.archive else None


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    from benchmarks.tfidf import TfidfLogreg
    from rnn_sentiment.serving import Predictor

    args = parse_args(argv)
    reviews = read_reviews(args)
    tests = template_tests()
    systems: dict[str, Scorer] = {}
    if reviews is not None:
        tests += sentence_tests(reviews, args.sentences)
        train = reviews[reviews["split"] == "train"]
        systems["TF-IDF + logistic regression"] = TfidfLogreg(train["text"], train["label"])
    for name, path in args.model:
        systems[name] = Predictor.from_dir(path, precision="float32")
    results = {name: failure_rates(tests, scorer) for name, scorer in systems.items()}
    print("Failure rate per test (lower is better):\n")
    print(table(tests, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
