"""MovieLens releases by name: download, verify, cache and read into one tidy table.

Zips come from GroupLens and are checked against published checksums before anything
is extracted. ML-100k also has an offline route, the copy inside the recbole 1.2.1
wheel on PyPI, because it is the dataset the chapter, the docs and the slow tests use.

Cache layout under ``cache_dir()``: ``<name>.zip`` (verified download),
``<name>/`` (the release's files), ``<name>/collabkit-manifest.json`` (sha256, size and
rows of the ratings file as extracted) and ``<name>/collabkit-ratings-v1.parquet`` (the
parsed table, so the second load is fast, with its own record beside it).

Every use re-checks the cache cheaply: ML-100k's ``u.data`` against GroupLens's sha256,
other releases' ratings file against the manifest (size and mtime, hashed when they
differ), the Parquet copy against its record and page CRCs. A damaged file is reported in
one line on stderr and rebuilt (from the kept zip, else downloaded or the offline route);
a cache folder that cannot be written only costs speed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from collabkit.atomic import atomic_path, fsync_dir
from collabkit.checksum import file_sha256
from collabkit.data import cache
from collabkit.errors import CollabkitError, DataError

__all__ = [
    "MOVIELENS",
    "MovieLensRelease",
    "cache_dir",
    "convert_recbole_ml100k",
    "load_movielens",
    "movielens_users",
]

MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"  # env COLLABKIT_MOVIELENS_URL
TIMEOUT_S = 10.0  # short, so that an unreachable GroupLens falls back quickly
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_SOURCE = "recbole==1.2.1 wheel (offline copy of GroupLens ML-100k)"
# sha256 of GroupLens's ml-100k/u.data; the converted recbole copy must match it byte for byte.
ML100K_UDATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
# sha256 of u.data's (user, item, rating) rows in file order as float64 (n, 3), C order: what the
# canonical splits (u1..u5, ua, ub) check a table against (`splits.ml100k_fingerprint`).
ML100K_RATINGS_FINGERPRINT = "3cb9c2f0a4c6b6d2deb6889e1266e64dd12f1fcc9ef36d3ebfad71acc1696802"
# fmt: off
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# fmt: on
_PARQUET = "collabkit-ratings-v1.parquet"  # bump the version when the parsed layout changes
_SOURCE_FILE = "collabkit-source.txt"  # which source filled the folder (GroupLens or recbole)
_MANIFEST = "collabkit-manifest.json"  # the ratings file as extracted: sha256, size, mtime, rows
_RATINGS_FILE = {"100k": "u.data", "dat": "ratings.dat", "csv": "ratings.csv"}
_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_RATING_DTYPES = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}


@dataclass(frozen=True)
class MovieLensRelease:
    """One MovieLens release: its zip on GroupLens, how to verify it, how its files look."""

    name: str
    folder: str  # the top folder inside the zip
    layout: Literal["100k", "dat", "csv"]
    checksum: str | None  # of the zip, hex; None where no fixed published value exists
    checksum_algo: Literal["sha256", "md5"] | None
    size: int | None = None  # bytes, from the same source as the checksum (for messages)
    encoding: str = "utf-8"  # of the item (and user) file
    has_users: bool = False

    @property
    def filename(self) -> str:
        """The zip's name on GroupLens and in the cache."""
        return f"{self.name}.zip"

    @property
    def url(self) -> str:
        """The zip's URL; the base is read at call time so tests can point it elsewhere."""
        base = os.environ.get("COLLABKIT_MOVIELENS_URL") or MOVIELENS_BASE_URL
        return base.rstrip("/") + "/" + self.filename


# Checksums of GroupLens's zips, by source:
# - sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt.
# - ml-10m md5: the value GroupLens publishes in ml-10m.zip.md5, as quoted in public code
#   (eli-osherovich/papers_with_code, datasets/movielens/dl_config.py, and others).
# - ml-32m md5: the value GroupLens publishes in ml-32m.zip.md5, as quoted in public code
#   (several download scripts and a pooch `known_hash`).
# - ml-latest-small: none. GroupLens regenerates this zip now and then (tfds recorded one
#   snapshot of 978,202 bytes), so a fixed checksum would reject the current file; the
#   zip's own CRCs are checked instead.
# fmt: off
MOVIELENS: dict[str, MovieLensRelease] = {
    release.name: release
    for release in (
        MovieLensRelease(
            "ml-100k", "ml-100k", "100k",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", "sha256",
            4_924_029, encoding="latin-1", has_users=True,
        ),
        MovieLensRelease(
            "ml-1m", "ml-1m", "dat",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", "sha256",
            5_917_549, encoding="latin-1", has_users=True,
        ),
        MovieLensRelease("ml-10m", "ml-10M100K", "dat", "ce571fd55effeba0271552578f2648bd", "md5",
                         65_566_137),
        MovieLensRelease(
            "ml-20m", "ml-20m", "csv",
            "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", "sha256",
            198_702_078,
        ),
        MovieLensRelease(
            "ml-25m", "ml-25m", "csv",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", "sha256",
            261_978_986,
        ),
        MovieLensRelease("ml-32m", "ml-32m", "csv", "d472be332d4daa821edc399621853b57", "md5",
                         238_950_008),
        MovieLensRelease("ml-latest-small", "ml-latest-small", "csv", None, None),
    )
}
# fmt: on


class _Unreachable(Exception):
    """The GroupLens server could not be reached or the transfer broke off."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"could not reach {url} ({reason})")
        self.url = url


def cache_dir() -> Path:
    """Return the cache folder: $COLLABKIT_HOME, else ~/.cache/collabkit."""
    home = os.environ.get("COLLABKIT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "collabkit"


def load_movielens(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Return one MovieLens release as a table, downloading and caching it on first use.

    Columns: ``user``, ``item`` (int64), ``rating`` (float32), ``timestamp`` (int64,
    Unix seconds), ``title``, ``genres`` ("Action|Comedy" as the release writes them),
    and for ml-100k also ``release_date``, ``video_release_date`` and ``imdb_url``
    (its 19 genre flags become ``genres``, "unknown" included). Rows keep the order of
    the release's ratings file, which ml-100k's published splits depend on.
    ``df.attrs["source"]`` says where the data came from.

    Args:
        name: a key of ``MOVIELENS``, e.g. "ml-100k".
        cache_dir: where to keep files; default ``cache_dir()``.
        offline: never contact GroupLens; default: $COLLABKIT_OFFLINE is 1/true/yes.
        progress: show a progress bar on stderr while downloading.

    Raises:
        CollabkitError: unknown name, checksum mismatch, or no way to get the files.
    """
    release = _release(name)
    root, is_offline = _root(cache_dir), _is_offline(offline)
    try:
        folder = _ensure_release(release, root, is_offline, progress)
    except OSError as exc:
        if not cache.is_unwritable(exc):
            raise
        return _without_cache(release, root, is_offline, progress, exc, _parse_release)
    parquet = folder / _PARQUET
    df = cache.read_parquet_cache(parquet, source=str(folder / _RATINGS_FILE[release.layout]))
    if df is None:
        df = _parse_release(folder, release)
        cache.write_parquet_cache(df, parquet)  # a folder that cannot be written: one warning
    df.attrs["dataset"] = release.name
    df.attrs["source"] = _source_of(folder)
    return df


def movielens_path(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path:
    """The folder of a release's verified files (ml-100k: ``u.data``, ``u.item``, ...), fetched
    and checked on first use: collabkit's ``untar_data(URLs.ML_100k)``, for code that reads the
    release's own files as the chapter does.

    Args, offline route and errors as ``load_movielens``; a cache folder that cannot be written
    raises OSError here, since the path must outlive the call.
    """
    return _ensure_release(_release(name), _root(cache_dir), _is_offline(offline), progress)


def _parse_release(folder: Path, release: MovieLensRelease) -> pd.DataFrame:
    """The release's table parsed from its files, labelled with the release and its source."""
    df = _READERS[release.layout](folder, release)
    df.attrs["dataset"] = release.name
    df.attrs["source"] = _source_of(folder)
    return df


def _without_cache(
    release: MovieLensRelease,
    root: Path,
    offline: bool,
    progress: bool,
    why: OSError,
    read: Callable[[Path, MovieLensRelease], pd.DataFrame],
) -> pd.DataFrame:
    """Fetch and read the release in a temporary folder when the cache folder cannot be written."""
    where = why.filename or root
    cache.say(
        f"warning: cannot write the cache folder ({where}: {why.strerror or why}); "
        f"reading {release.name} through a temporary folder, nothing is kept (slower)"
    )
    kept = root / release.filename
    with tempfile.TemporaryDirectory(prefix="collabkit-") as tmp:
        folder = _ensure_release(
            release, Path(tmp), offline, progress, zip_path=kept if kept.is_file() else None
        )
        return read(folder, release)


def movielens_users(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Return the user table of ml-100k or ml-1m (the releases that ship one).

    Columns: ``user``, ``age``, ``gender``, ``occupation``, ``zip_code``. In ml-1m
    ``age`` is a bracket code and ``occupation`` a number code, as its README lists them.
    """
    release = _release(name)
    if not release.has_users:
        with_users = ", ".join(r.name for r in MOVIELENS.values() if r.has_users)
        raise CollabkitError(f"{name} has no user table; only {with_users} ship one")
    root, is_offline = _root(cache_dir), _is_offline(offline)
    try:
        folder = _ensure_release(release, root, is_offline, progress)
    except OSError as exc:
        if not cache.is_unwritable(exc):
            raise
        return _without_cache(release, root, is_offline, progress, exc, _read_users)
    return _read_users(folder, release)


def _read_users(folder: Path, release: MovieLensRelease) -> pd.DataFrame:
    columns = ["user", "age", "gender", "occupation", "zip_code"]
    if release.layout == "100k":
        return pd.read_csv(
            folder / "u.user",
            sep="|",
            header=None,
            names=columns,
            encoding="latin-1",
            dtype={"user": "int64", "age": "int64", "zip_code": "str"},
            quoting=csv.QUOTE_NONE,
        )
    users = _read_dat(
        folder / "users.dat",
        ["user", "gender", "age", "occupation", "zip_code"],
        {"user": "int64", "age": "int64", "occupation": "int64", "zip_code": "str"},
        release.encoding,
    )
    return users[columns]


def convert_recbole_ml100k(wheel: str | Path, out_dir: str | Path) -> Path:
    """Write GroupLens's ``u.data``, ``u.item`` and ``u.user`` from a recbole wheel's ML-100k.

    recbole keeps every rating in GroupLens's row order, the users, titles, years and
    genres, but not the release date, video release date or IMDb URL: those ``u.item``
    fields are left empty. Titles become "Title (year)"; item 267, which GroupLens calls
    "unknown" and recbole "unkonwn", gets GroupLens's title back.
    """
    prefix = "recbole/dataset_example/ml-100k/ml-100k."
    with zipfile.ZipFile(wheel) as zf:
        inter = _recbole_rows(zf, prefix + "inter", 4)
        items = _recbole_rows(zf, prefix + "item", 4)
        users = _recbole_rows(zf, prefix + "user", 5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "u.data", "w", encoding="ascii", newline="\n") as f:
        f.writelines(f"{user}\t{item}\t{rating}\t{ts}\n" for user, item, rating, ts in inter)
    with open(out / "u.item", "w", encoding="latin-1", newline="\n") as f:
        for line, (item, title, year, classes) in enumerate(items, start=2):
            genres = set(classes.split())
            if unknown := genres - set(ML100K_GENRES):
                raise DataError(
                    f"unknown genre {sorted(unknown)[0]!r}",
                    path=prefix + "item",
                    line=line,
                    column="class",
                )
            title = "unknown" if title == year == "unkonwn" else f"{title} ({year})"
            flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
            f.write(f"{item}|{title}||||{flags}\n")
    with open(out / "u.user", "w", encoding="latin-1", newline="\n") as f:
        f.writelines("|".join(row) + "\n" for row in users)
    return out


# --- getting the files -------------------------------------------------------------


def _release(name: str) -> MovieLensRelease:
    if name not in MOVIELENS:
        raise CollabkitError(f"unknown dataset {name!r}; expected one of: {', '.join(MOVIELENS)}")
    return MOVIELENS[name]


def _root(folder: str | Path | None) -> Path:
    return Path(folder).expanduser() if folder is not None else cache_dir()


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("COLLABKIT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _ensure_release(
    release: MovieLensRelease, root: Path, offline: bool, progress: bool, zip_path: Path | None = None
) -> Path:
    """Return the folder holding the release's verified files, fetching or rebuilding them if needed."""
    folder = root / release.name
    if _has_files(folder, release):
        problem = _verify_release(folder, release, zip_path or root / release.filename)
        if problem is None:
            return folder
        _discard_damaged(folder, problem)
    root.mkdir(parents=True, exist_ok=True)
    zip_path = zip_path or root / release.filename
    if zip_path.exists():  # downloaded earlier, or put there by hand
        _check_archive(zip_path, release, file_sha256(zip_path, release.checksum_algo or "sha256"))
    elif offline and release.name == "ml-100k":
        _ml100k_from_recbole(folder, zip_path, "offline mode is on")
        return folder
    elif offline:
        raise CollabkitError(
            f"{release.name} is not in the cache and offline mode is on (offline=True or "
            f"COLLABKIT_OFFLINE); download {release.url} and put it at {zip_path}"
        )
    else:
        try:
            _download(release, zip_path, progress)
        except _Unreachable as exc:
            if release.name != "ml-100k":
                raise CollabkitError(f"{exc}; download it elsewhere and put it at {zip_path}") from exc
            _ml100k_from_recbole(folder, zip_path, str(exc))
            return folder
    _extract(zip_path, release, folder)
    return folder


def _has_files(folder: Path, release: MovieLensRelease) -> bool:
    needed = {
        "100k": ("u.data", "u.item"),
        "dat": ("ratings.dat", "movies.dat"),
        "csv": ("ratings.csv", "movies.csv"),
    }[release.layout]
    return all((folder / f).is_file() for f in needed)


def _verify_release(folder: Path, release: MovieLensRelease, zip_path: Path) -> str | None:
    """None if the cached ratings file is the one extracted; else what is wrong with it, in words.

    ML-100k's u.data (2 MB) is hashed every time against GroupLens's sha256. Other releases are
    checked against the manifest written at extraction (size and mtime; hashed when they differ).
    A folder from an older collabkit has no manifest: it is checked against the kept zip's size and
    CRC where the zip is there, and its manifest is written then.
    """
    problem = _verify_ratings(folder, release, zip_path)
    return problem if problem is not None else _verify_items(folder, release)


_ITEMS_FILE = {"100k": "u.item", "dat": "movies.dat", "csv": "movies.csv"}


def _items_record(folder: Path, release: MovieLensRelease) -> dict[str, object]:
    return cache.file_record(folder / _ITEMS_FILE[release.layout])


def _verify_items(folder: Path, release: MovieLensRelease) -> str | None:
    """None if the item file (u.item, movies.dat/csv: titles and genres) is the one extracted.

    It is small, so it is hashed every time against the sha256 recorded at extraction; a folder
    from an older collabkit gets its record now (trusted from this first check on).
    """
    items = folder / _ITEMS_FILE[release.layout]
    try:
        got = file_sha256(items)
    except OSError as e:
        return f"{items.name} cannot be read ({e.strerror or e})"
    record = cache.read_manifest(folder / _MANIFEST) or {}
    want = (record.get("items") or {}).get("sha256") if isinstance(record.get("items"), dict) else None
    if want is None:
        with contextlib.suppress(OSError):  # a read-only cache: record it next time
            cache.write_manifest(
                folder / _MANIFEST, {**record, "items": cache.file_record(items, digest=got)}
            )
        return None
    if got == want:
        return None
    return f"{items.name} has sha256 {got[:12]}..., not the {str(want)[:12]}... it had when extracted"


def _verify_ratings(folder: Path, release: MovieLensRelease, zip_path: Path) -> str | None:
    """None if the cached ratings file is the one extracted; else what is wrong with it, in words."""
    ratings = folder / _RATINGS_FILE[release.layout]
    if release.name == "ml-100k":
        try:
            got = file_sha256(ratings)
        except OSError as e:
            return f"u.data cannot be read ({e.strerror or e})"
        if got == ML100K_UDATA_SHA256:
            return None
        size = ratings.stat().st_size
        return (
            f"u.data ({size:,} bytes) has sha256 {got[:12]}..., not GroupLens's {ML100K_UDATA_SHA256[:12]}..."
        )
    record = cache.read_manifest(folder / _MANIFEST)
    if record is None:
        problem = _check_against_zip(ratings, release, zip_path)
        if problem is None:
            with contextlib.suppress(OSError):  # a read-only cache: check again next time
                cache.write_manifest(folder / _MANIFEST, {"ratings": _ratings_record(ratings, release)})
        return problem
    problem = cache.check_record(ratings, record.get("ratings") or {})
    return None if problem is None else f"{ratings.name}: {problem}"


def _check_against_zip(ratings: Path, release: MovieLensRelease, zip_path: Path) -> str | None:
    """Compare an extracted ratings file with its member in the kept zip (size, CRC-32)."""
    if not zip_path.is_file():
        return None  # nothing to compare with: trust the folder, as older versions did
    try:
        with zipfile.ZipFile(zip_path) as zf:
            info = zf.getinfo(f"{release.folder}/{ratings.name}")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    size = ratings.stat().st_size
    if size != info.file_size:
        return f"{ratings.name}: {size:,} bytes where the zip holds {info.file_size:,}"
    crc = 0
    with open(ratings, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return None if crc == info.CRC else f"{ratings.name}: CRC-32 differs from the zip's"


def _ratings_record(ratings: Path, release: MovieLensRelease) -> dict[str, object]:
    lines = cache.count_lines(ratings)
    return cache.file_record(ratings, rows=lines - (release.layout == "csv"))


def _discard_damaged(folder: Path, problem: str) -> None:
    """Move a damaged release folder out of the way (then delete it) so it can be rebuilt.

    Only a folder collabkit filled (it holds the source marker) is deleted; any other is the user's.
    """
    if not (folder / _SOURCE_FILE).is_file():
        raise CollabkitError(
            f"{folder}: {problem}; collabkit did not fill this folder, so it is left alone: "
            "move it away or delete it to fetch the release again"
        )
    cache.say(f"the cached {folder.name} in {folder} is damaged ({problem}); rebuilding it")
    aside = folder.with_name(f".{folder.name}.damaged-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return  # another process moved it first
    shutil.rmtree(aside, ignore_errors=True)


def _source_of(folder: Path) -> str:
    marker = folder / _SOURCE_FILE
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else f"files in {folder}"


def _download(release: MovieLensRelease, dest: Path, progress: bool) -> None:
    """Download the zip to dest via a temp file, moved into place only once verified."""
    url = release.url
    if urllib.parse.urlsplit(url).scheme not in {"http", "https", "file"}:  # a setting, not an outage
        raise CollabkitError(f"bad MovieLens URL {url!r}: not http(s); check COLLABKIT_MOVIELENS_URL")
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except OSError as exc:  # URLError, HTTPError, timeouts and refused connections
        raise _Unreachable(url, getattr(exc, "reason", exc)) from exc
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else release.size
    digest = hashlib.new(release.checksum_algo or "sha256", usedforsecurity=False)
    with response, atomic_path(dest) as tmp:  # renamed onto dest only once verified
        with open(tmp, "wb") as out, _progress(progress, total, url) as advance:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as exc:  # the network, not our disk
                    raise _Unreachable(url, f"transfer broke off: {exc!r}") from exc
                if not chunk:
                    break
                out.write(chunk)  # a full or read-only disk raises OSError here, not _Unreachable
                digest.update(chunk)
                advance(len(chunk))
        _check_archive(tmp, release, digest.hexdigest(), shown=dest)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache may be shared


@contextmanager
def _progress(enabled: bool, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a download bar on stderr (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
               rp.TransferSpeedColumn(), rp.TimeRemainingColumn())  # fmt: skip
    with rp.Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label.rsplit("/", 1)[-1], total=total)
        yield lambda n: bar.advance(task, n)


def _check_archive(path: Path, release: MovieLensRelease, hexdigest: str, shown: Path | None = None) -> None:
    """Raise unless the zip matches its published checksum (or, without one, its CRCs)."""
    shown = shown or path
    if release.checksum is not None:
        if hexdigest != release.checksum:
            size = f"{path.stat().st_size:,} bytes"
            if release.size is not None:
                size += f", expected {release.size:,}"
            fix = "delete it to download again" if shown == path else "nothing was kept"
            raise CollabkitError(
                f"{shown}: {release.checksum_algo} {hexdigest} does not match the published "
                f"{release.checksum} ({size}); the file is incomplete or not the "
                f"{release.name} zip from {release.url}; {fix}"
            )
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except zipfile.BadZipFile as exc:
        raise CollabkitError(f"{shown}: not a zip file ({exc}); delete it and try again") from exc
    if bad is not None:
        raise CollabkitError(f"{shown}: member {bad!r} is corrupt; delete it and try again")


def _extract(zip_path: Path, release: MovieLensRelease, folder: Path) -> None:
    """Unpack the release's folder into place atomically (temp folder, then rename)."""
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{release.name}."))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise CollabkitError(f"{zip_path}: not a zip file ({exc})") from exc
        unpacked = staging / release.folder
        if not _has_files(unpacked, release):
            raise CollabkitError(
                f"{zip_path}: no {release.folder}/ folder with the expected files; "
                f"is it the {release.name} zip from {release.url}?"
            )
        ratings = unpacked / _RATINGS_FILE[release.layout]
        with open(ratings, "rb+") as f:
            os.fsync(f.fileno())  # the manifest must not describe data still in memory
        doc = {"items": _items_record(unpacked, release)}
        if release.name != "ml-100k":  # ML-100k's u.data is checked against GroupLens's own sha256
            doc["ratings"] = _ratings_record(ratings, release)
        cache.write_manifest(unpacked / _MANIFEST, doc)
        (unpacked / _SOURCE_FILE).write_text(f"grouplens ({release.url})\n", encoding="utf-8")
        _move_into_place(unpacked, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, folder: Path) -> None:
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        os.replace(staging, folder)
        fsync_dir(folder.parent)
    except OSError as exc:
        if (folder / _SOURCE_FILE).exists():
            return  # another process finished the same folder first; its copy is as good as ours
        raise CollabkitError(f"{folder} exists without the release's files; delete it and try again") from exc


def _ml100k_from_recbole(folder: Path, zip_path: Path, why: str) -> None:
    """Fill folder with GroupLens-layout ML-100k converted from the recbole wheel."""
    with tempfile.TemporaryDirectory(prefix="collabkit-recbole-") as tmp:
        wheel = _pip_download(RECBOLE_WHEEL, Path(tmp), why, zip_path)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".ml-100k."))
        try:
            convert_recbole_ml100k(wheel, staging)
            got = file_sha256(staging / "u.data")
            if got != ML100K_UDATA_SHA256:
                raise CollabkitError(
                    f"ML-100k converted from {wheel.name} has u.data sha256 {got}, not "
                    f"GroupLens's {ML100K_UDATA_SHA256}; put GroupLens's ml-100k.zip at {zip_path}"
                )
            (staging / _SOURCE_FILE).write_text(RECBOLE_SOURCE + "\n", encoding="utf-8")
            cache.write_manifest(staging / _MANIFEST, {"items": _items_record(staging, _release("ml-100k"))})
            _move_into_place(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _pip_download(requirement: str, dest: Path, why: str, zip_path: Path) -> Path:
    """Download (never install) one wheel from PyPI with pip and return its path."""
    # --only-binary: a wheel is all we read, and pip must never build an sdist here
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", requirement]
    cmd += ["-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        detail = ((done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        detail = repr(exc)
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise CollabkitError(
            f"ml-100k: GroupLens skipped ({why}) and `pip download {requirement}` failed "
            f"({detail}); put GroupLens's ml-100k.zip at {zip_path}"
        )
    return wheels[0]


def _recbole_rows(zf: zipfile.ZipFile, member: str, width: int) -> list[list[str]]:
    try:
        lines = zf.read(member).decode("utf-8").splitlines()
    except KeyError as exc:
        raise DataError("not in the recbole wheel", path=member) from exc
    rows = [line.split("\t") for line in lines[1:] if line]
    for line, row in enumerate(rows, start=2):
        if len(row) != width:
            raise DataError(f"expected {width} tab-separated fields, got {len(row)}", path=member, line=line)
    return rows


# --- reading the files ---------------------------------------------------------------


def _read_ml100k(folder: Path, release: MovieLensRelease) -> pd.DataFrame:
    ratings = pd.read_csv(
        folder / "u.data", sep="\t", header=None, names=_RATING_COLUMNS, dtype=_RATING_DTYPES
    )
    extra = ["release_date", "video_release_date", "imdb_url"]
    items = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        names=["item", "title", *extra, *ML100K_GENRES],
        encoding=release.encoding,
        quoting=csv.QUOTE_NONE,
        dtype={"item": "int64", "title": "str", **dict.fromkeys(extra, "str")},
        keep_default_na=False,
        na_values=dict.fromkeys(extra, [""]),
    )
    flags = items[list(ML100K_GENRES)].to_numpy(dtype=bool)
    items["genres"] = ["|".join(g for g, on in zip(ML100K_GENRES, row, strict=True) if on) for row in flags]
    items = items.drop(columns=list(ML100K_GENRES))[["item", "title", "genres", *extra]]
    return _join(ratings, items, folder / "u.item")


def _read_dat_release(folder: Path, release: MovieLensRelease) -> pd.DataFrame:
    ratings = pd.read_csv(
        io.BytesIO((folder / "ratings.dat").read_bytes().replace(b"::", b"\t")),
        sep="\t",
        header=None,
        names=_RATING_COLUMNS,
        dtype=_RATING_DTYPES,
        engine="pyarrow",
    )
    items = _read_dat(folder / "movies.dat", ["item", "title", "genres"], {"item": "int64"}, release.encoding)
    return _join(ratings, items, folder / "movies.dat")


def _read_dat(path: Path, names: list[str], dtype: dict[str, str], encoding: str) -> pd.DataFrame:
    """Read a '::'-separated file; a utf-8 file that fails to decode is read as latin-1."""
    data = path.read_bytes().replace(b"::", b"\t")
    dtype = {name: dtype.get(name, "str") for name in names}
    for enc in dict.fromkeys([encoding, "latin-1"]):
        try:
            return pd.read_csv(
                io.BytesIO(data),
                sep="\t",
                header=None,
                names=names,
                dtype=dtype,
                encoding=enc,
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
            )
        except UnicodeDecodeError:
            continue
    raise DataError(f"cannot decode as {encoding} or latin-1", path=path)  # unreachable: latin-1


def _read_csv_release(folder: Path, release: MovieLensRelease) -> pd.DataFrame:
    ratings = pd.read_csv(
        folder / "ratings.csv",
        engine="pyarrow",
        dtype={"userId": "int64", "movieId": "int64", "rating": "float32", "timestamp": "int64"},
    ).rename(columns={"userId": "user", "movieId": "item"})
    items = pd.read_csv(
        folder / "movies.csv",
        engine="pyarrow",
        dtype={"movieId": "int64", "title": "str", "genres": "str"},
    ).rename(columns={"movieId": "item"})
    return _join(ratings[_RATING_COLUMNS], items[["item", "title", "genres"]], folder / "movies.csv")


def _join(ratings: pd.DataFrame, items: pd.DataFrame, item_file: Path) -> pd.DataFrame:
    """Attach item columns to each rating, keeping the ratings' row order."""
    if items["item"].duplicated().any():
        dup = int(items.loc[items["item"].duplicated(), "item"].iloc[0])
        raise DataError(f"item {dup} is listed twice", path=item_file)
    missing = ~ratings["item"].isin(items["item"])
    if missing.any():
        example = int(ratings.loc[missing, "item"].iloc[0])
        raise DataError(f"{int(missing.sum())} ratings name items it lacks, e.g. {example}", path=item_file)
    return ratings.merge(items, on="item", how="left", sort=False)


_READERS: dict[str, Callable[[Path, MovieLensRelease], pd.DataFrame]] = {
    "100k": _read_ml100k,
    "dat": _read_dat_release,
    "csv": _read_csv_release,
}
