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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnn_sentiment.errors import UserError


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


def read_parquet(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """Read a stage's Parquet input, saying how to produce it when it is missing."""
    return pq.read_table(require_file(path), columns=columns)


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
    require_file(path)
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def require_file(path: str | os.PathLike[str]) -> Path:
    """Return `path` if it is a file, else raise a `UserError` that says how to produce it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing input file {path}: run `dvc repro` to produce it")
    return path
