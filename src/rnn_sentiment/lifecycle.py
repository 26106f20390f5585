"""A stage process lives and dies with the `dvc` that started it.

SIGTERM to `dvc` (what a CI runner or `timeout` sends) kills `dvc` alone: its stage process would
run on as an orphan and, when it finished, overwrite the outputs of a later, successful `dvc repro`
with ones that match no `dvc.lock`. So a stage watches its launcher and, once it is gone, stops
the way it stops on SIGTERM: `SystemExit` unwinds it, no output is renamed into place, and an open
MLflow run is closed as failed.

The launcher is the parent process, or the parent's parent when the parent is a shell that runs
the command without `exec` (DVC starts stages through `$SHELL -c`). On Linux the kernel sends the
signal the moment the parent dies (`PR_SET_PDEATHSIG`); a watcher thread covers the shell case and
other systems within `POLL_S`. The launcher is noted when the `stages` package is imported, before
a stage's own imports (torch alone takes seconds), so a launcher that dies during them counts too.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rnn_sentiment.errors import exit_on_user_error

POLL_S = 0.5
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish"})
_PR_SET_PDEATHSIG = 1
# (parent, watched grandparent or None) as first seen by this process: who launched it.
_launcher: tuple[int, int | None] | None = None


def _parent_of(pid: int) -> int | None:
    """The parent pid of `pid` from /proc, or None where /proc cannot tell (gone, not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])  # the name may hold spaces and parentheses


def _is_shell(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip() in SHELLS
    except OSError:
        return False


def launcher_alive(parent: int, grandparent: int | None) -> bool:
    """Whether the processes that started this one still hold it: the parent is still the parent
    (an orphan is re-parented), and a watched grandparent is still the parent's parent."""
    if os.getppid() != parent:
        return False
    return grandparent is None or _parent_of(parent) == grandparent


def _ask_kernel_for_sigterm_on_parent_death() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def remember_launcher() -> tuple[int, int | None]:
    """Note, once per process, the processes that launched it, and ask the kernel for SIGTERM when
    the parent dies; return (parent, watched grandparent or None)."""
    global _launcher
    if _launcher is None:
        parent = os.getppid()
        _launcher = (parent, _parent_of(parent) if _is_shell(parent) else None)
        if sys.platform.startswith("linux"):
            _ask_kernel_for_sigterm_on_parent_death()
    return _launcher


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def tied_to_launcher() -> Iterator[None]:
    """Within the block, SIGTERM raises `SystemExit(143)` and so does the launcher's death."""
    parent, grandparent = remember_launcher()
    previous = signal.signal(signal.SIGTERM, _terminate)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            if not launcher_alive(parent, grandparent):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=watch, name="launcher-watch", daemon=True)
    watcher.start()
    try:
        if not launcher_alive(parent, grandparent):  # it died before we were watching
            os.kill(os.getpid(), signal.SIGTERM)
        yield
    finally:
        done.set()
        signal.signal(signal.SIGTERM, previous)


def stage_main(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a stage's `main(argv) -> int`: one-line user errors (`exit_on_user_error`), and the
    process ends with its launcher (`tied_to_launcher`)."""
    checked = exit_on_user_error(main)

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        with tied_to_launcher():
            return checked(*args, **kwargs)

    return wrapper
