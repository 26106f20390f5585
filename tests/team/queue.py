"""DVC's experiment queue, driven as a team member would: queue, start workers, wait for them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.sample_repo import GIT_IDENTITY, dvc

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


def start(repo: Path, jobs: int) -> None:
    """`dvc queue start -j jobs`. The workers it leaves running inherit its output, so its output
    goes to a file: a pipe would stay open, and its reader wait, until the last worker exits."""
    env = {**GIT_IDENTITY, **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)]
        done = subprocess.run(command, cwd=repo, env=env, stdout=log, stderr=log, check=False)
        if done.returncode != 0:
            log.seek(0)
            raise AssertionError(f"dvc queue start failed:\n{log.read().decode()}")


def run_queue(repo: Path, jobs: int, timeout: float = 900.0) -> dict[str, str]:
    """`start`, then `wait`."""
    start(repo, jobs)
    return wait(repo, timeout)


def wait(repo: Path, timeout: float = 900.0) -> dict[str, str]:
    """Wait until every queued experiment is done and every worker has exited; return their
    statuses. On a timeout the workers are killed, none left running."""
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
