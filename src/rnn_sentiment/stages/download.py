"""download stage: fetch the IMDB archive, verify its sha256, read the labelled reviews.

The archive comes from the official URL by default, or from a local path or `file://` mirror; a
source that cannot be reached falls through to the next mirror, but a wrong digest stops at once.
Reviews are read straight from the compressed stream: nothing is extracted to disk, so no member
can land outside its target and links are never followed. A matching sha256 proves only that the
file is the one named: a stream cut short, or a member far larger than any review, is still refused
rather than read into a partial table or into all of memory. Each review keeps the IMDB id of its
movie (from the archive's `urls_*.txt`), so validation can hold out whole movies as the official
train/test split does.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import pandas as pd

from rnn_sentiment import params as params_lib
from rnn_sentiment.errors import UserError, reason
from rnn_sentiment.files import atomic_path, write_parquet
from rnn_sentiment.lifecycle import stage_main
from rnn_sentiment.params import DownloadParams, Source
from rnn_sentiment.progress import progress

REVIEW_MEMBER = re.compile(
    r"^aclImdb/(?P<split>train|test)/(?P<label>pos|neg)/(?P<id>\d+)_(?P<rating>\d+)\.txt$"
)
URLS_MEMBER = re.compile(r"^aclImdb/(?P<split>train|test)/urls_(?P<label>pos|neg)\.txt$")
MOVIE_ID = re.compile(r"/title/(tt\d+)")
COLUMNS = ["split", "review_id", "rating", "label", "text", "movie"]
CHUNK = 1 << 20
# The longest review of the official archive is about 14 kB, a `urls_*.txt` about 0.6 MB (a URL
# of ~50 bytes per review). A member far beyond either is refused before it is read: a few GB of
# zeros compress to a few MB, and would otherwise be read whole into memory.
MAX_REVIEW_BYTES = 1 << 20
MAX_URLS_BYTES = 16 << 20
TIMEOUT_S = 30  # per network read; an unreachable host fails over to the next mirror


class SourceUnavailable(Exception):
    """A source could not be reached; the next mirror may still work."""


def run(params: DownloadParams, cache_dir: Path) -> pd.DataFrame:
    """Fetch and verify the archive from the first reachable source, and return its reviews."""
    return read_reviews(fetch(params.sources(), cache_dir))


def fetch(sources: tuple[Source, ...], cache_dir: Path) -> Path:
    """Return the path of a verified archive, trying `sources` in order."""
    failures = []
    for source in sources:
        try:
            return _fetch_one(source, cache_dir)
        except SourceUnavailable as err:
            failures.append(f"{source.url} ({err})")
    raise UserError(
        f"could not fetch the archive from {'; '.join(failures)}: "
        "set download.url (and download.sha256) to a reachable URL or a local copy"
    )


def _fetch_one(source: Source, cache_dir: Path) -> Path:
    parsed = urllib.parse.urlparse(source.url)
    if parsed.scheme in ("http", "https"):
        cached = cache_dir / Path(parsed.path).name
        if cached.is_file() and sha256_of(cached) == source.sha256:
            return cached
        _download(source, cached)
        return cached
    if parsed.scheme not in ("", "file"):
        raise UserError(
            f"download.url scheme '{parsed.scheme}' unsupported: use http(s), file:// or a path"
        )
    path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else source.url)
    if not path.is_file():
        raise SourceUnavailable("no such file")
    _verify(path.name, sha256_of(path), source.sha256)
    return path


def _download(source: Source, target: Path) -> None:
    """Stream `source` into `target`, hashing as it goes; keep it only if the digest matches."""
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(source.url, timeout=TIMEOUT_S) as response,
            atomic_path(target) as tmp,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                tmp.open("wb") as out,
                progress(total=total, unit="B", unit_scale=True, desc="download") as bar,
            ):
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            _verify(source.url, digest.hexdigest(), source.sha256)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise SourceUnavailable(getattr(err, "reason", err)) from None


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks with a progress bar."""
    digest = hashlib.sha256()
    with (
        path.open("rb") as handle,
        progress(total=path.stat().st_size, unit="B", unit_scale=True, desc="sha256") as bar,
    ):
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _verify(name: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise UserError(
            f"sha256 mismatch for {name}: expected {expected}, got {actual}; "
            "fix download.sha256 or use an intact copy of the archive"
        )


def read_reviews(archive: Path) -> pd.DataFrame:
    """Read the labelled reviews `{train,test}/{pos,neg}/<id>_<rating>.txt`, skipping all else.

    Rows are sorted by (split, label, review_id) so the same archive always gives the same table.
    `movie` is the IMDB title id that line `review_id` of `{split}/urls_{label}.txt` links to, or
    null where that line is missing or names no title.
    """
    rows, urls = [], {}
    try:
        # gzip, not tarfile's own "r|gz", checks the stream's length and CRC at its end: a stream
        # cut short must fail even where the cut falls between two members.
        with gzip.open(archive, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in progress(tar, desc="read reviews", unit=" files"):
                if not member.isreg():
                    continue
                if urls_match := URLS_MEMBER.match(member.name):
                    lines = _read(tar, member, MAX_URLS_BYTES, archive).decode("utf-8").splitlines()
                    urls[urls_match["split"], int(urls_match["label"] == "pos")] = lines
                    continue
                match = REVIEW_MEMBER.match(member.name)
                if match is None:
                    continue
                text = _read(tar, member, MAX_REVIEW_BYTES, archive).decode("utf-8")
                rows.append(
                    (
                        match["split"],
                        int(match["id"]),
                        int(match["rating"]),
                        int(match["label"] == "pos"),
                        text,
                    )
                )
            while stream.read(CHUNK):  # past the tar's end, to the end of the gzip stream
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UserError(
            f"archive {archive} is truncated or corrupt ({reason(err)}): fetch an intact copy and "
            "give its sha256 (download.url, download.sha256)"
        ) from None
    except UnicodeDecodeError:
        raise UserError(
            f"archive {archive} holds a review that is not UTF-8: use the official archive"
        ) from None
    if not rows:
        raise UserError(
            f"archive {archive} has no labelled reviews (aclImdb/{{train,test}}/{{pos,neg}})"
        )
    frame = pd.DataFrame(rows, columns=COLUMNS[:-1]).astype(
        {"review_id": "int32", "rating": "int8", "label": "int8"}
    )
    keys = zip(frame["split"], frame["label"], frame["review_id"], strict=True)
    frame["movie"] = pd.array(
        [_movie(urls.get((split, label), []), review_id) for split, label, review_id in keys],
        dtype="string",
    )
    return frame.sort_values(["split", "label", "review_id"], ignore_index=True)


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, archive: Path) -> bytes:
    """The bytes of `member`, refused when over `limit`: by the size its header gives, before a
    byte is read, and by what is read, which stops at `limit + 1` bytes."""
    data = tar.extractfile(member).read(limit + 1) if member.size <= limit else b""
    if member.size > limit or len(data) > limit:
        raise UserError(
            f"archive {archive}: {member.name} is over {limit} bytes, more than any member of "
            "the IMDB archive: use the official archive"
        )
    return data


def _movie(lines: list[str], review_id: int) -> str | None:
    found = MOVIE_ID.search(lines[review_id]) if review_id < len(lines) else None
    return found[1] if found else None


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=params_lib.PARAMS_FILE)
    parser.add_argument(
        "--cache-dir", type=Path, required=True, help="where fetched archives are kept"
    )
    parser.add_argument("--output", type=Path, required=True, help="the reviews table (.parquet)")
    args = parser.parse_args(argv)
    reviews = run(params_lib.load(args.params).download, args.cache_dir)
    write_parquet(reviews, args.output)
    counts = reviews.groupby(["split", "label"]).size().to_dict()
    print(f"download: {len(reviews)} reviews {counts} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
