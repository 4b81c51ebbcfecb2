"""Data: datasets by name, any ratings table, vocabularies, splits and batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from collabkit.data.tables import read_ratings


def load_ratings(
    data: str | Path,
    *,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    timestamp: str | None = None,
    sep: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """A MovieLens release by name (`ml-100k`, ...) or a ratings file (CSV/TSV/Parquet) by path."""
    from collabkit.data.datasets import MOVIELENS, load_movielens

    if str(data) in MOVIELENS:
        return load_movielens(str(data), progress=progress)
    path = Path(data)
    if not path.exists() and not path.suffix:
        from collabkit.errors import CollabkitError

        raise CollabkitError(
            f"unknown dataset {str(data)!r}: not a file, and not one of: {', '.join(MOVIELENS)}"
        )
    return read_ratings(path, user=user, item=item, rating=rating, timestamp=timestamp, sep=sep)


__all__ = ["load_ratings", "read_ratings"]
