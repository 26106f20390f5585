from __future__ import annotations

import functools
import gzip
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from rnn_sentiment.errors import UserError
from rnn_sentiment.params import DownloadParams, Source
from rnn_sentiment.stages import download
from tests.conftest import build_archive, movie_url, sha256


def params_for(archive: Path, **kwargs: object) -> DownloadParams:
    return DownloadParams(url=str(archive), sha256=sha256(archive), **kwargs)


def test_reads_only_labelled_reviews(tiny_archive: Path, tmp_path: Path) -> None:
    reviews = download.run(params_for(tiny_archive), tmp_path / "cache")

    assert list(reviews.columns) == download.COLUMNS
    assert len(reviews) == 48
    assert reviews.groupby(["split", "label"]).size().tolist() == [12, 12, 12, 12]
    assert not reviews["text"].str.contains("unlabelled|outside the target|root:").any()
    assert 999 not in reviews["review_id"].tolist()  # the symlink
    assert reviews["rating"].between(1, 10).all()
    assert (reviews.loc[reviews["label"] == 1, "rating"] >= 7).all()


def test_each_review_knows_its_movie(tiny_archive: Path, tmp_path: Path) -> None:
    reviews = download.run(params_for(tiny_archive), tmp_path / "cache")
    review = reviews.query("split == 'test' and label == 1 and review_id == 3")
    assert review["movie"].tolist() == [movie_url("test", 1, 3).split("/")[4]]
    assert reviews.groupby(["split", "label"])["movie"].nunique().tolist() == [6, 6, 6, 6]
    assert reviews["movie"].isna().sum() == 4  # each folder's last line is no title page


def test_same_archive_gives_byte_identical_table(tiny_archive: Path, tmp_path: Path) -> None:
    params = params_for(tiny_archive)
    outputs = []
    for name in ("a.parquet", "b.parquet"):
        assert (
            download.main(
                [
                    "--params",
                    str(write_params(tmp_path, params)),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--output",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def write_params(tmp_path: Path, params: DownloadParams) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        f"download:\n  url: '{params.url}'\n  sha256: '{params.sha256}'\n  mirrors: []\n",
        encoding="utf-8",
    )
    return path


def test_file_url_and_mirror_fallback(tiny_archive: Path, tmp_path: Path) -> None:
    digest = sha256(tiny_archive)
    params = DownloadParams(
        url=str(tmp_path / "missing.tar.gz"),
        sha256=digest,
        mirrors=(Source(url=tiny_archive.as_uri(), sha256=digest),),
    )
    assert download.fetch(params.sources(), tmp_path) == tiny_archive


def test_wrong_sha256_names_both_digests_and_writes_nothing(
    tiny_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "reviews.parquet"
    output.write_bytes(b"earlier output")
    params = DownloadParams(url=str(tiny_archive), sha256="0" * 64)
    code = download.main(
        [
            "--params",
            str(write_params(tmp_path, params)),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(output),
        ]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert "sha256 mismatch" in err and "0" * 64 in err and sha256(tiny_archive) in err
    assert len(err.strip().splitlines()) == 1
    assert output.read_bytes() == b"earlier output"


def test_truncated_archive_is_a_clear_error(tiny_archive: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(tiny_archive.read_bytes()[:300])
    with pytest.raises(UserError, match="truncated or corrupt"):
        download.read_reviews(truncated)


def run_main(tmp_path: Path, archive: Path, output: Path) -> int:
    """The download stage's `main` on `archive`, verified against the archive's own sha256."""
    params = write_params(tmp_path, params_for(archive))
    return download.main(
        ["--params", str(params), "--cache-dir", str(tmp_path / "cache"), "--output", str(output)]
    )


def test_archive_cut_short_is_refused_though_its_sha256_matches(
    tiny_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tiny_archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    output = tmp_path / "reviews.parquet"
    output.write_bytes(b"earlier output")
    cuts = [*range(300, len(whole), max(1, len(whole) // 40)), len(whole) - 8]
    errors = {}
    for cut in cuts:
        truncated.write_bytes(whole[:cut])
        code = run_main(tmp_path, truncated, output)
        errors[cut] = capsys.readouterr().err if code == 2 else f"exit {code}"

    assert [cut for cut, err in errors.items() if err.startswith("exit")] == []
    for err in errors.values():
        assert err.startswith(f"error: archive {truncated} is truncated or corrupt"), err
        assert "download.sha256" in err and err.count("\n") == 1
    assert output.read_bytes() == b"earlier output"


def archive_with(path: Path, name: str, size: int) -> Path:
    """A `.tar.gz` holding one member `name` of `size` zero bytes, written as a stream."""

    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(path, "wb") as stream, tarfile.open(fileobj=stream, mode="w|") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, Zeros())
    return path


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("aclImdb/train/pos/0_9.txt", download.MAX_REVIEW_BYTES),
        ("aclImdb/test/urls_neg.txt", download.MAX_URLS_BYTES),
    ],
)
def test_an_oversized_member_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, limit: int
) -> None:
    archive = archive_with(tmp_path / "big.tar.gz", name, limit + 1)
    read = []
    monkeypatch.setattr(
        tarfile.ExFileObject, "read", lambda self, size=-1: read.append(size) or b""
    )

    with pytest.raises(UserError, match=rf"{name} is over {limit} bytes.*official archive"):
        download.read_reviews(archive)
    assert read == []


def test_a_member_at_the_limit_is_read(tmp_path: Path) -> None:
    limit = download.MAX_REVIEW_BYTES
    archive = archive_with(tmp_path / "edge.tar.gz", "aclImdb/train/pos/0_9.txt", limit)
    assert download.read_reviews(archive)["text"].str.len().tolist() == [limit]


def test_missing_file_everywhere_is_a_clear_error(tmp_path: Path) -> None:
    params = DownloadParams(url=str(tmp_path / "nowhere.tar.gz"), sha256="a" * 64)
    with pytest.raises(UserError, match=r"could not fetch .*nowhere.tar.gz.*set download.url"):
        download.fetch(params.sources(), tmp_path)


def test_archive_without_reviews_is_rejected(tmp_path: Path) -> None:
    empty = build_archive(tmp_path / "empty.tar.gz", per_class=0)
    with pytest.raises(UserError, match="no labelled reviews"):
        download.read_reviews(empty)


@pytest.fixture
def http_archive(tiny_archive: Path):
    """Serve the tiny archive over HTTP on a free loopback port, counting the GET requests."""
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Handler, directory=str(tiny_archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/{tiny_archive.name}", hits
    server.shutdown()


def test_http_download_is_cached_once_verified(
    http_archive, tiny_archive: Path, tmp_path: Path
) -> None:
    url, hits = http_archive
    source = Source(url=url, sha256=sha256(tiny_archive))
    first = download.fetch((source,), tmp_path / "cache")
    second = download.fetch((source,), tmp_path / "cache")

    assert first == second == tmp_path / "cache" / tiny_archive.name
    assert first.read_bytes() == tiny_archive.read_bytes()
    assert len(hits) == 1


def test_http_download_with_wrong_digest_keeps_nothing(http_archive, tmp_path: Path) -> None:
    url, _ = http_archive
    with pytest.raises(UserError, match="sha256 mismatch"):
        download.fetch((Source(url=url, sha256="f" * 64),), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
