"""A threshold that labels some review otherwise than 0.5 does, so a test shows it was used."""

from __future__ import annotations

import numpy as np


def flipping_threshold(probabilities: object) -> float:
    """A threshold in (0, 1) that flips the label of the probability nearest 0.5 and no other."""
    p = np.sort(np.asarray(probabilities, dtype=float))
    nearest = p[np.argmin(np.abs(p - 0.5))]
    if nearest >= 0.5:  # positive at 0.5: put the threshold just above it
        above = p[p > nearest]
        return float((nearest + (above[0] if above.size else 1.0)) / 2)
    below = p[p < nearest]  # negative at 0.5: put the threshold just below it
    return float((nearest + (below[-1] if below.size else 0.0)) / 2)


def labels(probabilities: object, threshold: float) -> list[str]:
    return ["positive" if p >= threshold else "negative" for p in np.asarray(probabilities)]
