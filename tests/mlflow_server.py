"""Servers for the tests and the benchmarks: MLflow's own HTTP server (`mlflow models serve`), and
any server command run in the background until it answers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def invoke(url: str, payload: object, timeout: float = 60.0) -> tuple[int, Any]:
    """POST `payload` as JSON to the server's `/invocations`; return the status and parsed reply.

    An HTTP error is an answer too (400 for a bad review), so it is returned, not raised.
    """
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        with err:
            body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, body.decode("utf-8", "replace")


@contextlib.contextmanager
def mlflow_server(model_uri: str, port: int | None = None, timeout: float = 90.0) -> Iterator[str]:
    """Run `mlflow models serve` for `model_uri` on 127.0.0.1 while the block runs; yield its URL.

    It is MLflow's own server, as docs/serving.md has users run it, reading the store that
    `tracking.configure` picks.
    """
    from rnn_sentiment import tracking

    port = port or free_port()
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager"]
    command += ["local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.configure()}
    url = f"http://127.0.0.1:{port}"
    with background(command, f"{url}/ping", env, timeout):
        yield url


@contextlib.contextmanager
def background(
    command: list[str], health_url: str, env: dict[str, str], timeout: float = 90.0
) -> Iterator[subprocess.Popen]:
    """Run a server `command` while the block runs, from the moment `health_url` answers 200.

    This interpreter's bin folder comes first on PATH, so the server is the one installed beside
    the tests. The server runs in its own process group, so that stopping it also stops the
    workers it starts (uvicorn's, gunicorn's); the block may kill it early (`os.killpg`).
    """
    bin_dir = Path(sys.executable).parent
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            _wait_until_up(health_url, server, log, timeout)
            yield server
        finally:
            _stop(server)


def _wait_until_up(url: str, server: subprocess.Popen, log: Any, timeout: float) -> None:
    """Poll `url` until the server answers; fail with its output if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.25)
    log.seek(0)
    output = log.read().decode("utf-8", "replace")[-5000:]
    state = f"exited with {server.returncode}" if server.poll() is not None else "timed out"
    name = " ".join(Path(part).name for part in server.args[:3])
    raise RuntimeError(f"{name} {state} before answering {url}:\n{output}")


def _stop(server: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate the server's process group (its own: see `start_new_session`), then kill what
    is left of it (`mlflow server`'s job consumers outlive SIGTERM) and reap the server.

    The server is waited for without being reaped: until it is, its process group id cannot be
    given to another group, so the kill reaches this server's processes only."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ChildProcessError):  # already reaped: it died before being stopped
        while time.monotonic() < deadline and not _exited(server.pid):
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _exited(pid: int) -> bool:
    """Whether child `pid` has exited, leaving it to be reaped."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
