"""Train/validation splits as researchers make them; each returns row positions (int64 arrays)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
import torch

from collabkit.errors import CollabkitError

Split = tuple[np.ndarray, np.ndarray]  # (train rows, valid rows)
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
SplitName = Literal["random", "u1", "u2", "u3", "u4", "u5", "ua", "ub", "kfold", "last", "time"]


def random_split(n: int, valid_pct: float = 0.2, seed: int | None = None) -> Split:
    """fastai's RandomSplitter: the same rows as fastai for the same seed."""
    if not 0 <= valid_pct < 1:
        raise CollabkitError(f"valid_pct must be in [0, 1), got {valid_pct}")
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    perm = torch.randperm(n, generator=gen).numpy()
    cut = int(valid_pct * n)
    return perm[cut:].astype(np.int64), perm[:cut].astype(np.int64)


def _sorted_by_user_item(table: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Rows ordered as GroupLens's mku.sh sorts its files (user, then item, numerically)."""
    sub = table.iloc[rows]
    order = np.lexsort((sub["item"].to_numpy(), sub["user"].to_numpy()))
    return rows[order]


def ml100k_split(table: pd.DataFrame, name: str) -> Split:
    """GroupLens's canonical ML-100k splits, rebuilt from u.data's row order as mku.sh does.

    `u{i}`: test is rows (i-1)*20000 .. i*20000-1 of u.data, base the rest. `ua`/`ub`: test holds
    each user's first ten / next ten ratings in file order (allbut.pl), base the rest.
    """
    if name not in ML100K_SPLITS:
        raise CollabkitError(f"unknown ML-100k split {name!r}; expected one of: " + ", ".join(ML100K_SPLITS))
    if len(table) != 100_000:
        raise CollabkitError(
            f"split {name!r} is defined on ML-100k's 100,000 rows in u.data order; "
            f"this table has {len(table):,} rows"
        )
    n = len(table)
    rows = np.arange(n, dtype=np.int64)
    if name.startswith("u") and name[1:].isdigit():
        i = int(name[1:])
        test_mask = (rows >= (i - 1) * 20_000) & (rows < i * 20_000)
    else:
        lo, hi = (0, 10) if name == "ua" else (10, 20)
        rank = table.groupby("user", sort=False).cumcount().to_numpy()
        test_mask = (rank >= lo) & (rank < hi)
    return (
        _sorted_by_user_item(table, rows[~test_mask]),
        _sorted_by_user_item(table, rows[test_mask]),
    )


def kfold(n: int, k: int = 5, seed: int | None = None) -> Iterator[Split]:
    """k shuffled folds: every row is in exactly one validation part."""
    if not 2 <= k <= n:
        raise CollabkitError(f"k must be between 2 and the number of rows ({n}), got {k}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    for part in np.array_split(perm, k):
        mask = np.ones(n, dtype=bool)
        mask[part] = False
        yield np.flatnonzero(mask).astype(np.int64), np.sort(part)


def last_n_per_user(table: pd.DataFrame, n: int = 1) -> Split:
    """Each user's `n` latest ratings (by timestamp, then file order) are held out."""
    if "timestamp" not in table.columns:
        raise CollabkitError("a time split needs a 'timestamp' column")
    if n < 1:
        raise CollabkitError(f"n must be at least 1, got {n}")
    order = np.lexsort((np.arange(len(table)), table["timestamp"].to_numpy()))
    users = table["user"].to_numpy()[order]
    rank_from_end = pd.Series(users).groupby(users, sort=False).cumcount(ascending=False).to_numpy()
    valid = np.sort(order[rank_from_end < n]).astype(np.int64)
    train = np.sort(order[rank_from_end >= n]).astype(np.int64)
    return train, valid


def time_cutoff(table: pd.DataFrame, cutoff: float | None = None, valid_pct: float = 0.2) -> Split:
    """Ratings at or after `cutoff` (a timestamp) are held out; by default the latest valid_pct."""
    if "timestamp" not in table.columns:
        raise CollabkitError("a time split needs a 'timestamp' column")
    ts = table["timestamp"].to_numpy()
    if cutoff is None:
        cutoff = float(np.quantile(ts, 1 - valid_pct, method="higher"))
    mask = ts >= cutoff
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def make_split(
    table: pd.DataFrame,
    split: str = "random",
    *,
    valid_pct: float = 0.2,
    seed: int | None = None,
    fold: int = 0,
    k: int = 5,
    last_n: int = 1,
    cutoff: float | None = None,
) -> Split:
    """One split by name, for the command line and `CollabDataLoaders.from_df(split=...)`."""
    if split == "random":
        return random_split(len(table), valid_pct, seed)
    if split in ML100K_SPLITS:
        return ml100k_split(table, split)
    if split == "kfold":
        if not 0 <= fold < k:
            raise CollabkitError(f"fold must be in 0..{k - 1}, got {fold}")
        return list(kfold(len(table), k, seed))[fold]
    if split == "last":
        return last_n_per_user(table, last_n)
    if split == "time":
        return time_cutoff(table, cutoff, valid_pct)
    raise CollabkitError(
        f"unknown split {split!r}; expected one of: random, {', '.join(ML100K_SPLITS)}, kfold, last, time"
    )
