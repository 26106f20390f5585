"""DVC's experiment queue, driven as a team member would: queue, start workers, wait for them."""

from __future__ import annotations

import time
from pathlib import Path

from tests.sample_repo import dvc

ACTIVE = ("Queued", "Running")


def statuses(repo: Path) -> tuple[dict[str, str], str]:
    """`dvc queue status`: each experiment's status by name, and the line about the workers."""
    lines = dvc(repo, "queue", "status").splitlines()
    found, workers = {}, ""
    for line in lines[1:]:
        fields = line.split()
        if line.startswith("Worker status"):
            workers = line
        elif len(fields) >= 4:
            found[fields[1]] = fields[-1]
    return found, workers


def run_queue(repo: Path, jobs: int, timeout: float = 900.0) -> dict[str, str]:
    """`dvc queue start -j jobs`, then wait until every experiment is done and every worker has
    exited; return their statuses. On a timeout the workers are killed, none left running."""
    dvc(repo, "queue", "start", "-j", str(jobs))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            found, workers = statuses(repo)
            if not set(found.values()) & set(ACTIVE) and "0 active, 0 idle" in workers:
                return found
            time.sleep(2)
    except BaseException:
        dvc(repo, "queue", "stop", "--kill")
        raise
    dvc(repo, "queue", "stop", "--kill")
    raise AssertionError(f"the queue did not finish in {timeout:.0f} s: {statuses(repo)}")


def failure_logs(repo: Path, found: dict[str, str]) -> str:
    """The logs of the experiments that did not succeed, to show why."""
    return "\n".join(
        dvc(repo, "queue", "logs", name) for name, status in found.items() if status != "Success"
    )
