"""Progress bars for long work: shown in a terminal, silent under CI or when output is piped."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A `tqdm` bar that is off when `CI` is set and, by tqdm's rule, when stderr is no terminal."""
    kwargs.setdefault("disable", True if os.environ.get("CI") else None)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
