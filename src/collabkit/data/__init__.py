"""Data: datasets by name, any ratings table, vocabularies, splits and batches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from collabkit.checksum import file_sha256
from collabkit.data.cache import read_parquet_cache, write_parquet_cache
from collabkit.data.datasets import MOVIELENS, cache_dir, load_movielens
from collabkit.data.tables import Duplicates, apply_duplicates, read_ratings
from collabkit.errors import CollabkitError

CACHE_MIN_BYTES = 64 * 2**20
_LAYOUT = 2  # the parsed table's layout: bump when the reader's output changes


def load_ratings(
    data: str | Path,
    *,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    timestamp: str | None = None,
    sep: str | None = None,
    progress: bool = True,
    cache: bool | None = None,
    duplicates: Duplicates = "error",
) -> pd.DataFrame:
    """A MovieLens release by name (`ml-100k`, ...) or a ratings file (CSV/TSV/Parquet) by path.

    A big text file (64 MiB or more; `cache=True` forces it, `False` never) is parsed once and kept
    as Parquet under the cache folder, keyed by the sha256 of its content (an edit that keeps the
    size and modification time is still seen; hashing costs about 1 s per GB) and the options
    asked for; later loads read the Parquet copy, which is many times faster. A damaged copy is
    reported and rebuilt; a cache folder that cannot be written costs speed, never an error.

    A repeated (user, item) pair follows `duplicates`: "error" (the default) refuses the table,
    naming how many rows repeat a pair and the first two lines that clash; "last" keeps the latest
    rating (by timestamp, else the last row), "mean" their average. `table.attrs["duplicates_dropped"]`
    says how many rows went. The MovieLens releases have none, so they load unchanged.
    """
    if str(data) in MOVIELENS:
        return apply_duplicates(load_movielens(str(data), progress=progress), duplicates)
    path = Path(data)
    if not path.exists() and not path.suffix:
        raise CollabkitError(
            f"unknown dataset {str(data)!r}: not a file, and not one of: {', '.join(MOVIELENS)}"
        )

    def parse() -> pd.DataFrame:
        return read_ratings(
            path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep, duplicates=duplicates
        )

    if not path.is_file() or path.suffix == ".parquet":
        return parse()
    stat = path.stat()
    if not (cache if cache is not None else stat.st_size >= CACHE_MIN_BYTES):
        return parse()
    key = json.dumps([file_sha256(path), user, item, rating, timestamp, sep, duplicates, _LAYOUT])
    cached = cache_dir() / "tables" / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"
    table = read_parquet_cache(cached, source=str(path))
    if table is not None:
        table.attrs.setdefault("duplicates_dropped", 0)  # kept by Parquet; a copy without it had none
    else:
        table = parse()
        write_parquet_cache(table, cached)  # a folder that cannot be written: one warning, no cache
    return table


__all__ = ["apply_duplicates", "load_movielens", "load_ratings", "read_ratings"]
