"""Per-epoch metrics for DVC while a training runs, through DVCLive.

DVCLive rewrites `<dir>/metrics.json` (the latest epoch) and appends to
`<dir>/plots/metrics/<name>.tsv` after every epoch. The train stage declares both in dvc.yaml, so
`dvc exp show` shows the epochs of a running experiment as they arrive, also one a queue worker
runs in its copy under `.dvc/tmp/exps/`, and `dvc plots` draws them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dvclive import Live
from scmrepo.exceptions import SCMError


def open_live(directory: Path) -> Live:
    """A DVCLive logger writing to `directory`, leaving experiments and dvc.yaml to DVC.

    DVCLive reads the Git HEAD as it starts and fails in a repository without a commit yet (a
    fresh `git init && dvc init && dvc repro`). No experiment can exist there, so it is started
    from outside any repository instead: it writes the same files, with no DVC link to lose.
    """
    options = {"dvcyaml": None, "save_dvc_exp": False}
    try:
        return Live(str(directory), **options)
    except SCMError:
        absolute = directory.resolve()
        with tempfile.TemporaryDirectory() as nowhere, contextlib.chdir(nowhere):
            return Live(str(absolute), **options)


def log_epoch(live: Live, metrics: Mapping[str, float], epoch: int) -> None:
    """Write one epoch's metrics, as step `epoch`, to DVCLive's files."""
    live.step = epoch
    for name, value in metrics.items():
        live.log_metric(name, float(value))
    live.next_step()
