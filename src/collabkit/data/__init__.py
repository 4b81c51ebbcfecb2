"""Data: datasets by name, any ratings table, vocabularies, splits and batches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from collabkit.data.cache import read_parquet_cache, write_parquet_cache
from collabkit.data.datasets import MOVIELENS, cache_dir, load_movielens
from collabkit.data.tables import read_ratings
from collabkit.errors import CollabkitError

CACHE_MIN_BYTES = 64 * 2**20


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
) -> pd.DataFrame:
    """A MovieLens release by name (`ml-100k`, ...) or a ratings file (CSV/TSV/Parquet) by path.

    A big text file (64 MiB or more; `cache=True` forces it, `False` never) is parsed once and kept
    as Parquet under the cache folder, keyed by its path, size, modification time and the columns
    asked for; later loads read the Parquet copy, which is many times faster. A damaged copy is
    reported and rebuilt; a cache folder that cannot be written costs speed, never an error.
    """
    if str(data) in MOVIELENS:
        return load_movielens(str(data), progress=progress)
    path = Path(data)
    if not path.exists() and not path.suffix:
        raise CollabkitError(
            f"unknown dataset {str(data)!r}: not a file, and not one of: {', '.join(MOVIELENS)}"
        )

    def parse() -> pd.DataFrame:
        return read_ratings(path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep)

    if not path.is_file() or path.suffix == ".parquet":
        return parse()
    stat = path.stat()
    if not (cache if cache is not None else stat.st_size >= CACHE_MIN_BYTES):
        return parse()
    key = json.dumps(
        [str(path.resolve()), stat.st_size, stat.st_mtime_ns, user, item, rating, timestamp, sep]
    )
    cached = cache_dir() / "tables" / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"
    table = read_parquet_cache(cached, source=str(path))
    if table is None:
        table = parse()
        write_parquet_cache(table, cached)  # a folder that cannot be written: one warning, no cache
    return table


__all__ = ["load_movielens", "load_ratings", "read_ratings"]
