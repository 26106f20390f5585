"""validate stage: check the whole params file whenever any of it changes.

Every stage validates params.yaml when it runs, but DVC runs a stage only when a key it declares
changes: a typo such as `train.learning_rate` or an unknown block is declared by no stage, so
without this stage `dvc repro` would run nothing and exit 0. This one depends on all of
params.yaml, so any change to it runs the check first, cheaply, and a bad key stops the pipeline
with one line that names it.
"""

from __future__ import annotations

import argparse

from rnn_sentiment import params as params_lib
from rnn_sentiment.lifecycle import stage_main


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    args = parser.parse_args(argv)
    params_lib.load(args.params)
    print(f"validate: {args.params} is valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
