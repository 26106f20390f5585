"""A stage process ends with the process that launched it: no orphan outlives `dvc`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rnn_sentiment.lifecycle import launcher_alive, stage_main

# A stage-like process: waits until killed, then records how it ended.
CHILD = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from rnn_sentiment.lifecycle import stage_main

    @stage_main
    def main(argv):
        try:
            Path(argv[0]).write_text("started")
            time.sleep(60)
            return 0
        finally:
            Path(argv[0]).write_text("unwound")

    raise SystemExit(main(sys.argv[1:]))
    """
)


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    return state != "Z"  # a zombie has ended; it only waits to be reaped by init


@pytest.mark.parametrize("through_shell", [False, True], ids=["direct", "non-exec-shell"])
def test_a_stage_ends_when_its_launcher_is_killed(tmp_path: Path, through_shell: bool) -> None:
    script, marker = tmp_path / "child.py", tmp_path / "marker"
    script.write_text(CHILD)
    child = [sys.executable, str(script), str(marker)]
    # `; true` keeps bash from exec-ing the command: the stage's parent is then the shell, and the
    # launcher its grandparent, as with DVC under a shell that does not exec.
    command = ["bash", "-c", f"{' '.join(child)}; true"] if through_shell else child
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:]); "
            "print(p.pid, flush=True); time.sleep(120)",
            *command,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: marker.exists() and marker.read_text() == "started")
        stage_pid = _stage_pid(tmp_path, int(launcher.stdout.readline()), through_shell)
        launcher.kill()  # SIGKILL: the launcher gets no chance to pass anything on
        launcher.wait()
        assert _wait_for(lambda: not _alive(stage_pid), timeout=10), "the stage outlived dvc"
        assert marker.read_text() == "unwound"  # it stopped through SystemExit, not a kill
    finally:
        launcher.kill()


def _stage_pid(tmp_path: Path, spawned: int, through_shell: bool) -> int:
    """The stage process: the spawned one, or the shell's child that runs the script."""
    if not through_shell:
        return spawned
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                parent = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if parent == spawned and str(tmp_path / "child.py").encode() in cmdline:
                return int(proc.name)
    raise AssertionError("the stage process under the shell was not found")


def test_launcher_alive_notices_a_new_parent() -> None:
    assert launcher_alive(os.getppid(), None)
    assert not launcher_alive(os.getppid() + 1_000_000, None)


def test_sigterm_unwinds_a_stage_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)

    @stage_main
    def main(argv: list[str] | None = None) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
