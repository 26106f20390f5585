"""Cut or pad ragged rows of token ids to one length: what the pad stage does to the corpus and
serving does to each request, so a review reaches the model the same way on both paths."""

from __future__ import annotations

import numpy as np

from rnn_sentiment.params import PadParams
from rnn_sentiment.text import PAD_ID


def pad_sequences(
    values: np.ndarray, offsets: np.ndarray, params: PadParams
) -> tuple[np.ndarray, np.ndarray]:
    """Pad ragged rows (flat `values` cut at `offsets`) to `[N, maxlen]`; return ids and lengths.

    Vectorised: row i keeps `kept_i = min(len_i, maxlen)` tokens, taken from its start or its end
    (`truncating`) and placed at the left or the right of its padded row (`padding`).
    """
    maxlen = params.maxlen
    lengths = np.diff(offsets)
    kept = np.minimum(lengths, maxlen)
    first = offsets[:-1] + (lengths - kept if params.truncating == "pre" else 0)
    start_col = maxlen - kept if params.padding == "pre" else np.zeros_like(kept)
    position = np.arange(maxlen)[None, :] - start_col[:, None]  # [N, maxlen] index in the kept run
    inside = (position >= 0) & (position < kept[:, None])
    ids = np.full((len(kept), maxlen), PAD_ID, dtype=np.int32)
    ids[inside] = values[(first[:, None] + position)[inside]]
    return ids, kept.astype(np.int32)
