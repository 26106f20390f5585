"""`rnn-sentiment predict`: reviews given as arguments or in a .txt, .csv or .parquet file, scored
by the pipeline's `models/` folder or any MLflow model URI."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from rnn_sentiment.errors import UserError, exit_on_user_error, reason
from rnn_sentiment.files import atomic_path
from rnn_sentiment.scorer import load_scorer
from rnn_sentiment.serving import Precision, Scorer, validate

SHOWN_CHARS = 70  # of each review echoed by `rnn-sentiment predict REVIEW...`
LISTED_ROWS = 10  # of the rows without text named in the warning


def _read_txt(path: Path) -> pd.DataFrame:
    """One review a line; a final newline ends the last line rather than adding an empty one."""
    content = path.read_text(encoding="utf-8")
    return pd.DataFrame({"text": content.removesuffix("\n").split("\n") if content else []})


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"text": str})  # a review such as "10" stays text


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".txt": _read_txt,
    ".csv": _read_csv,
    ".parquet": pd.read_parquet,
}
WRITERS: dict[str, Callable[[pd.DataFrame, Path], object]] = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def _suffix(path: Path, allowed: dict[str, object], option: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        *others, last = allowed
        raise UserError(f"{option} {path}: use a {', '.join(others)} or {last} file")
    return suffix


def check_output(path: Path) -> None:
    """Refuse an `--output` that cannot be written, before the model loads: found only when the
    predictions are written, the mistake would cost the scoring of every review."""
    _suffix(path, WRITERS, "--output")
    if path.is_dir():
        raise UserError(f"--output {path} is a folder: name a file, such as {path / 'scores.csv'}")
    if not path.parent.is_dir():
        raise UserError(f"--output {path}: no folder {path.parent}: create it or name another")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise UserError(
            f"--output {path}: cannot write in {path.parent} ({err.strerror or reason(err)}): "
            "name a folder you can write to"
        ) from None


def read_reviews(path: Path) -> pd.DataFrame:
    """The rows of a review file, with its reviews in a `text` column."""
    reader = READERS[_suffix(path, READERS, "--file")]
    if not path.is_file():
        raise UserError(f"--file {path}: no such file")
    try:
        frame = reader(path)
    except (ValueError, OSError) as err:  # parse errors, bad encoding, not Parquet
        raise UserError(f"--file {path}: cannot read it ({reason(err)})") from None
    if "text" not in frame.columns:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise UserError(f"--file {path}: no `text` column (columns: {columns}); name it `text`")
    if frame.empty:
        raise UserError(f"--file {path}: no reviews in it")
    return frame


def _is_missing(value: object) -> bool:
    """None, NaN or pd.NA: what pandas and Parquet make of an absent review."""
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def blank_rows(texts: Sequence[object], source: Path) -> list[int]:
    """Row numbers (1-based) with no review text; a value that is not text at all is refused."""
    blank = []
    for row, review in enumerate(texts, start=1):
        if _is_missing(review) or (isinstance(review, str) and not review.strip()):
            blank.append(row)
        elif not isinstance(review, str):
            raise UserError(
                f"--file {source}: row {row} of column `text` is {type(review).__name__}, not text"
            )
    return blank


def score_rows(scorer: Scorer, frame: pd.DataFrame, blank: list[int]) -> pd.DataFrame:
    """The input rows plus `probability` and `label`; `blank` rows (1-based) keep both empty."""
    keep = np.ones(len(frame), dtype=bool)
    keep[np.asarray(blank, dtype=np.int64) - 1] = False
    predictions = scorer.predict(frame["text"][keep].tolist())
    probability = np.full(len(frame), np.nan)
    probability[keep] = [p.probability for p in predictions]
    label = np.full(len(frame), None, dtype=object)
    label[keep] = [p.label for p in predictions]
    return frame.assign(probability=probability, label=label)


def _warn_blank(blank: list[int], total: int, source: Path) -> None:
    listed = ", ".join(map(str, blank[:LISTED_ROWS]))
    more = f" and {len(blank) - LISTED_ROWS} more" if len(blank) > LISTED_ROWS else ""
    rows = "row" if len(blank) == 1 else "rows"
    print(
        f"warning: {source}: no text in {len(blank)} of {total} rows, left without a "
        f"prediction: {rows} {listed}{more}",
        file=sys.stderr,
    )


def _shown(review: str) -> str:
    """A review on one line, cut to SHOWN_CHARS: enough to tell the printed lines apart."""
    flat = " ".join(review.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnn-sentiment predict",
        description="Sentiment of movie reviews. Prints `label<TAB>probability<TAB>review` per "
        "review given as an argument; with --file, the file's rows plus `probability` and "
        "`label` as CSV (or into --output).",
    )
    parser.add_argument("reviews", nargs="*", metavar="REVIEW", help="a review's text, quoted")
    parser.add_argument(
        "--file",
        type=Path,
        help="reviews to score: .txt (one a line), or .csv/.parquet "
        "with a `text` column; rows without text are kept, without a prediction",
    )
    parser.add_argument(
        "--output", type=Path, help="write the rows with their predictions here (.csv/.parquet)"
    )
    parser.add_argument(
        "--model",
        default="models",
        help="the train stage's folder (default: models), or an MLflow model URI such as "
        "models:/rnn-sentiment@champion, models:/rnn-sentiment/3 or runs:/<run_id>/model",
    )
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto",
        help="run the model in this dtype (default auto: bfloat16 on CPUs that compute it "
        "natively, about 3x faster; float32 gives the evaluate stage's numbers exactly)",
    )
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """`rnn-sentiment predict`: reviews from arguments or a file, predictions to stdout or file."""
    args = _parser().parse_args(argv)
    if args.reviews and args.file:
        raise UserError("give reviews as arguments or --file PATH, not both")
    if not args.reviews and not args.file:
        raise UserError('nothing to predict: give reviews ("A fine film.") or --file PATH')
    if args.output:
        check_output(args.output)
    frame, blank = _file_rows(args.file) if args.file else _argument_rows(args.reviews)
    scored = score_rows(load_scorer(args.model, args.precision), frame, blank)
    if blank:
        _warn_blank(blank, len(frame), args.file)
    _emit(scored, args.output, as_table=args.file is not None)
    return 0


def _emit(scored: pd.DataFrame, output: Path | None, as_table: bool) -> None:
    """Into `output` (whole or not at all); else a file's rows as CSV, arguments as lines."""
    if output:
        with atomic_path(output) as tmp:
            WRITERS[output.suffix.lower()](scored, tmp)
    elif as_table:
        scored.to_csv(sys.stdout, index=False)
    else:
        for row in scored.itertuples(index=False):
            print(f"{row.label}\t{row.probability:.6f}\t{_shown(row.text)}")


def _argument_rows(reviews: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """A blank review typed as an argument is a slip of the keyboard: refused, like the API does."""
    validate(reviews)
    return pd.DataFrame({"text": reviews}), []


def _file_rows(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """A file's blank rows are data, not a slip: kept without a prediction, so that the output
    lines up row for row with the input; a file with no text at all is refused."""
    frame = read_reviews(path)
    blank = blank_rows(frame["text"].tolist(), path)
    if len(blank) == len(frame):
        raise UserError(f"--file {path}: none of its {len(frame)} rows has any text")
    return frame, blank
