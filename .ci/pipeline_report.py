"""Markdown for a pull request: the pipeline's metrics and params against its base branch.

CI's `pipeline` job (.github/workflows/ci.yml) posts it as a comment, after `dvc pull`:

    python .ci/pipeline_report.py origin/main > report.md
"""

from __future__ import annotations

import subprocess
import sys


def dvc(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def report(base: str) -> str:
    """`dvc metrics diff --md` and `dvc params diff --md` against `base`, under headings."""
    metrics = dvc("metrics", "diff", "--md", base) or "No metric changed."
    params = dvc("params", "diff", "--md", base) or "No param changed."
    return (
        f"### Pipeline against `{base}`\n\n#### Metrics\n\n{metrics}\n\n#### Params\n\n{params}\n"
    )


def main() -> int:
    print(report(sys.argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
