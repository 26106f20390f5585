"""Progress bars for long work: shown in a terminal, silent under CI or when output is piped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bars_shown() -> bool:
    """Whether long work shows a bar: not when `CI` is set, nor when stderr is no terminal."""
    return not os.environ.get("CI") and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A `tqdm` bar, shown by the rule of `bars_shown`."""
    kwargs.setdefault("disable", not bars_shown())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
