"""Wall time of each stage of a cold `dvc repro`, then of a no-op `dvc repro`, on a real archive.

Runs in a scratch git + DVC repository (this project's dvc.yaml, params.yaml and src/) with its
own MLflow store, so the project's own outputs, cache and store are left alone. Prints one table.

    python benchmarks/repro_timing.py --archive ../shared/data/aclImdb_v1_labelled.tar.gz \
        [--preset best]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnn_sentiment.presets import PRESETS
from tests.sample_repo import dvc, make_sample_repo

STAGES = ("download", "tokenize", "pad", "train", "evaluate")


def timed(repo: Path, *args: str) -> float:
    start = time.perf_counter()
    dvc(repo, *args)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="params.yaml with its overrides",
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        repo = make_sample_repo(Path(tmp), args.archive, **PRESETS[args.preset])
        for stage in STAGES:
            rows.append((f"cold `{stage}`", timed(repo, "repro", "--single-item", stage)))
        rows.append(("cold total", sum(seconds for _, seconds in rows)))
        rows.append(("no-op `dvc repro`", timed(repo, "repro")))
        paths = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["vars"][0]["paths"]
        metrics = json.loads((repo / paths["eval_metrics"]).read_text(encoding="utf-8"))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"preset {args.preset}\n| step | wall time |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} s |")
    print(f"| peak memory of a stage | {peak:,.0f} MB |")
    print(f"| test accuracy (`{paths['eval_metrics']}`) | {metrics['accuracy']:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
