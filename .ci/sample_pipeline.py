"""Run the whole pipeline on a tiny sample archive in a scratch repository and show its metrics.

What a user's CI runs to prove that the pipeline still goes end to end, in seconds, without the
real data: the same sample repository the end-to-end tests use.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sample_repo import dvc, make_sample_repo, repro


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        repo = make_sample_repo(Path(tmp))
        print("stages run:", ", ".join(repro(repo)))
        print(dvc(repo, "metrics", "show"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
