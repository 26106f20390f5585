"""User-facing errors: bad input the user can fix, reported as one line and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """An input problem with a known fix; its message names both, in one line."""


def reason(err: BaseException) -> str:
    """The first line of an exception's message (or its type, when it has none): the part of a
    library's error worth quoting inside a one-line `UserError`."""
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def exit_on_user_error(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a `main(argv) -> int` so a `UserError` prints `error: ...` and exits 2, no traceback."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper
