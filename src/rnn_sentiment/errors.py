"""User-facing errors: bad input the user can fix, reported as one line and a non-zero exit."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable


class UserError(Exception):
    """An input problem with a known fix; its message names both, in one line."""


def reason(err: BaseException) -> str:
    """The first line of an exception's message (or its type, when it has none): the part of a
    library's error worth quoting inside a one-line `UserError`."""
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


INTERRUPTED = 128 + signal.SIGINT  # the shell's exit status for a process stopped by Ctrl-C


def exit_on_user_error(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a `main(argv) -> int` so a `UserError` prints `error: ...` and exits 2, and Ctrl-C
    prints `interrupted` and exits 130: one line each, no traceback.

    Context managers inside `main` still see the interrupt as it unwinds (an MLflow run is closed
    as failed, a temporary output file is removed) before it is caught here."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return INTERRUPTED

    return wrapper
