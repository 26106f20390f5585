"""Atomic, deterministic writers for stage outputs.

Every output is written to a temporary file beside its target and renamed into place, so a crash
never leaves a half-written file for DVC to hash. Writers avoid timestamps so that the same inputs
give byte-identical files and nothing downstream re-runs needlessly.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnn_sentiment.errors import UserError, reason


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the body succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o644)  # mkstemp creates 0600; outputs should read like any other file
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(table: pd.DataFrame | pa.Table, target: str | os.PathLike[str]) -> None:
    """Write a table as zstd Parquet without an index (pyarrow's output is deterministic)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: str | os.PathLike[str], required: Sequence[str] = ()) -> pa.Table:
    """Read a stage's Parquet input, saying how to produce it when it is missing, damaged or
    lacks one of the `required` columns."""
    try:
        table = pq.read_table(require_file(path))
    except (pa.ArrowException, OSError) as err:
        raise UserError(
            f"{path} is not a readable Parquet file ({reason(err)}): rebuild it with `dvc repro`"
        ) from None
    missing = [f"`{column}`" for column in required if column not in table.column_names]
    if missing:
        raise UserError(
            f"{path} has no {', '.join(missing)} column (its columns: "
            f"{', '.join(table.column_names) or 'none'}): rebuild it with `dvc repro`"
        )
    return table


def write_json(data: Any, target: str | os.PathLike[str]) -> None:
    """Write `data` as sorted, indented JSON."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_npz(target: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed `.npz` with fixed zip timestamps (`np.savez` stamps now)."""
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in sorted(arrays.items()):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load every array of an `.npz` written by `write_npz` (no pickles)."""
    try:
        with np.load(require_file(path), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as err:
        raise UserError(
            f"{path} is truncated or corrupt ({reason(err)}): rebuild it with `dvc repro`"
        ) from None


def require_file(path: str | os.PathLike[str]) -> Path:
    """Return `path` if it is a file, else raise a `UserError` that says how to produce it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing input file {path}: run `dvc repro` to produce it")
    return path
