"""Shared fixtures: a tiny IMDB-layout archive, and MLflow pointed at a temporary store."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

POSITIVE = ["great", "wonderful", "loved", "brilliant", "superb", "moving"]
NEGATIVE = ["awful", "boring", "hated", "dull", "terrible", "waste"]
FILLER = ["the", "film", "plot", "actor", "scene", "story", "music", "ending", "a", "it"]


def synthetic_review(label: int, index: int) -> str:
    """A review whose sentiment is carried by a few cue words among neutral filler."""
    cues = POSITIVE if label else NEGATIVE
    words = [FILLER[(index * 7 + k) % len(FILLER)] for k in range(6 + index % 9)]
    for k in range(2):
        words.insert((index + 3 * k) % len(words), cues[(index + k) % len(cues)])
    return " ".join(words).capitalize() + ".<br /><br />" + ("Yes!" if index % 2 else "")


def build_archive(
    path: Path, per_class: int = 12, text: Callable[[int, int], str] = synthetic_review
) -> Path:
    """Write a `.tar.gz` in the official aclImdb layout, with the traps a real archive may hold.

    Besides `per_class` reviews in each of train/test × pos/neg it holds an `unsup/` folder, the
    vocabulary and README files, a member named `../escape.txt`, and a symlink that looks like a
    review: none of them may end up in the reviews table. `urls_*.txt` link every two reviews of a
    folder to one movie, `movie_url(split, label, i)`, except the last review, whose line is not
    a title page.
    """

    def add(tar: tarfile.TarFile, name: str, data: str) -> None:
        payload = data.encode("utf-8")
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "aclImdb/README", "Large Movie Review Dataset v1.0")
        add(tar, "aclImdb/imdb.vocab", "the\nfilm\n")
        for split in ("train", "test"):
            for folder, label in (("pos", 1), ("neg", 0)):
                for i in range(per_class):
                    rating = 7 + i % 4 if label else 1 + i % 4
                    add(tar, f"aclImdb/{split}/{folder}/{i}_{rating}.txt", text(label, i))
                urls = [movie_url(split, label, i) for i in range(per_class - 1)]
                add(tar, f"aclImdb/{split}/urls_{folder}.txt", "\n".join(urls) + "\nhttp://x/\n")
        add(tar, "aclImdb/train/unsup/0_0.txt", "unlabelled review")
        add(tar, "../escape.txt", "outside the target")
        link = tarfile.TarInfo("aclImdb/train/pos/999_10.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    return path


def movie_url(split: str, label: int, index: int) -> str:
    """The IMDB page of the movie that review `index` of a tiny archive's folder is about."""
    title = 1000 * (split == "test") + 100 * label + index // 2
    return f"http://www.imdb.com/title/tt{title:07d}/usercomments"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return build_archive(tmp_path / "aclImdb_tiny.tar.gz")


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point MLflow at a store under tmp_path, so tests never touch the project's own store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    yield uri
    # `tracking.configure()` sets the URIs for the whole process: forget them with the store.
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def synthetic_padded(per_class: int, offset: int = 0, maxlen: int = 24) -> tuple[dict, object]:
    """Padded arrays (`ids`, `lengths`, `labels`) of synthetic reviews, through the real stages.

    Returns the arrays and the tokenizer fitted on them.
    """
    import pyarrow as pa

    from rnn_sentiment.params import PadParams, TokenizeParams
    from rnn_sentiment.stages import pad, tokenize

    rows = [
        (label, synthetic_review(label, offset + i)) for i in range(per_class) for label in (0, 1)
    ]
    table = pa.table(
        {
            "split": ["train"] * len(rows) + ["test"],
            "review_id": list(range(len(rows) + 1)),
            "label": [label for label, _ in rows] + [0],
            "text": [review for _, review in rows] + ["unused"],
        }
    )
    tokenizer, tables = tokenize.run(TokenizeParams(max_features=50), table)
    return pad.run(PadParams(maxlen=maxlen), {"train": tables["train"]})["train"], tokenizer
