from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnn_sentiment.errors import UserError, exit_on_user_error, reason


def test_a_user_error_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    @exit_on_user_error
    def main(argv: list[str] | None = None) -> int:
        raise UserError("no such thing: make one")

    assert main([]) == 2
    assert capsys.readouterr().err == "error: no such thing: make one\n"


def test_ctrl_c_is_one_line_and_exit_code_130(capsys: pytest.CaptureFixture[str]) -> None:
    unwound = []

    @exit_on_user_error
    def main(argv: list[str] | None = None) -> int:
        try:
            raise KeyboardInterrupt
        finally:
            unwound.append(True)  # as an MLflow run's context manager closes it as failed

    try:
        code = main([])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a KeyboardInterrupt")
    assert code == 130
    assert capsys.readouterr() == ("", "interrupted\n")
    assert unwound == [True]


def test_sigint_stops_a_blocked_main_with_one_line_and_130(tmp_path: Path) -> None:
    script = tmp_path / "blocked.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from rnn_sentiment.errors import exit_on_user_error

            @exit_on_user_error
            def main(argv=None):
                print("ready", flush=True)
                time.sleep(120)
                return 0

            raise SystemExit(main())
            """
        ),
        encoding="utf-8",
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err == "interrupted\n"


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ValueError("bad value\nmore detail"), "bad value"),
        (EOFError(), "EOFError"),
        (OSError(" "), "OSError"),
    ],
)
def test_reason_is_the_first_line_or_the_type(err: BaseException, expected: str) -> None:
    assert reason(err) == expected
