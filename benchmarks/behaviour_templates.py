"""The words and sentence templates of the behaviour suite (benchmarks/behaviour.py).

Written for this suite, not taken from any sentiment dataset. Every adjective is one an IMDB
reviewer uses of a film, and each list is as long as its opposite, so a system that leans to one
label cannot hide it in an average. Slots are `str.format` fields: `{pos}` and `{neg}` take an
adjective, `{part}` a part of a film.
"""

from __future__ import annotations

POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "brilliant",
    "superb",
    "enjoyable",
    "beautiful",
    "amazing",
    "fantastic",
    "moving",
    "delightful",
)
NEGATIVE = (
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "horrible",
    "poor",
    "weak",
    "disappointing",
    "pointless",
    "stupid",
    "tedious",
)
PARTS = ("plot", "acting", "ending", "music", "dialogue", "first hour")

# A plain verdict: "{adj}" is replaced by {pos} or {neg}.
VERDICT = (
    "The film was {adj}.",
    "It is a {adj} movie.",
    "I found the acting {adj}.",
    "What a {adj} film.",
)
# The same verdicts negated, in the same order: the DIR test pairs them line by line.
NEGATED = (
    "The film was not {adj}.",
    "It is not a {adj} movie.",
    "I did not find the acting {adj}.",
    "This is not a {adj} film at all.",
)
# An expectation the film did not meet: the review means the opposite of {adj}.
EXPECTATION = (
    "I thought it would be {adj}, but it wasn't.",
    "I expected a {adj} film, but it was not.",
    "Everyone said it was {adj}, but it isn't.",
)
# A part of the film against the film as a whole: the second clause gives the label.
CONTRAST = (
    "The {part} was {first}, but overall the film was {overall}.",
    "The {part} is {first}, but on the whole it is a {overall} movie.",
)
# Facts with no sentiment, appended to a review: its label must not change.
NEUTRAL = (
    "The film was released in 2004.",
    "It runs for about two hours.",
    "I saw it on a Tuesday.",
    "The director also wrote the script.",
)
