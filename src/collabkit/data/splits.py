"""Train/validation splits as researchers make them; each returns row positions (int64 arrays).

`SplitSpec` is a split written down: its kind, its settings and the table's column names. A saved
model keeps its spec, so evaluating it again rebuilds exactly the rows it was tested on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch

from collabkit.errors import CollabkitError

Split = tuple[np.ndarray, np.ndarray]  # (train rows, valid rows)
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
SplitName = Literal["random", "u1", "u2", "u3", "u4", "u5", "ua", "ub", "kfold", "last", "recent", "time"]
SPLIT_NAMES: tuple[str, ...] = get_args(SplitName)


@dataclass(frozen=True)
class SplitSpec:
    """A split by name with every setting it depends on; round-trips through JSON.

    Only the settings of its kind matter (`valid_pct` and `seed` for random; `fold`, `k` and `seed`
    for kfold; `last_n` for last; `cutoff` or `valid_pct` for time); the others keep their defaults.
    """

    kind: str = "random"
    valid_pct: float = 0.2
    seed: int | None = 42
    fold: int = 0
    k: int = 5
    last_n: int = 1
    cutoff: float | None = None
    columns: dict[str, str] = field(
        default_factory=lambda: {"user": "user", "item": "item", "timestamp": "timestamp"}
    )

    def __post_init__(self) -> None:
        check_split(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """A short label: `random 20% (seed 42)`, `u1`, `kfold 2/5 (seed 42)`, ..."""
        if self.kind == "random":
            return f"random {self.valid_pct:.0%} (seed {self.seed})"
        if self.kind == "kfold":
            return f"kfold {self.fold}/{self.k} (seed {self.seed})"
        if self.kind == "last":
            return f"each user's last {self.last_n}"
        if self.kind == "recent":
            return f"each user's latest {self.valid_pct:.0%}"
        if self.kind == "time":
            return (
                f"time from {self.cutoff:g}"
                if self.cutoff is not None
                else f"time, latest {self.valid_pct:.0%}"
            )
        return self.kind


def check_split(spec: SplitSpec) -> None:
    """Raise CollabkitError for a split that cannot be made as asked."""
    if spec.kind not in SPLIT_NAMES:
        raise CollabkitError(f"unknown split {spec.kind!r}; expected one of: {', '.join(SPLIT_NAMES)}")
    if spec.kind == "random" and not 0 <= spec.valid_pct < 1:
        raise CollabkitError(
            f"valid_pct must be at least 0 and below 1 for a random split, got {spec.valid_pct}"
        )
    if spec.kind == "recent" and not 0 < spec.valid_pct < 1:
        raise CollabkitError(
            f"valid_pct must be above 0 and below 1 for a recent split (each user's latest share), "
            f"got {spec.valid_pct}"
        )
    if spec.kind == "time" and spec.cutoff is None and not 0 < spec.valid_pct < 1:
        raise CollabkitError(
            f"valid_pct must be above 0 and below 1 for a time split (the latest share held out), "
            f"got {spec.valid_pct}"
        )
    if spec.kind == "kfold":
        if isinstance(spec.k, bool) or int(spec.k) != spec.k or spec.k < 2:
            raise CollabkitError(
                f"k (the number of folds) must be a whole number of at least 2, got {spec.k}"
            )
        if not 0 <= spec.fold < spec.k:
            raise CollabkitError(f"fold must be in 0..{spec.k - 1}, got {spec.fold}")
    if spec.kind == "last" and spec.last_n < 1:
        raise CollabkitError(f"last_n must be at least 1, got {spec.last_n}")


def random_split(n: int, valid_pct: float = 0.2, seed: int | None = None) -> Split:
    """fastai's RandomSplitter: the same rows as fastai for the same seed."""
    if not 0 <= valid_pct < 1:
        raise CollabkitError(f"valid_pct must be at least 0 and below 1, got {valid_pct}")
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    perm = torch.randperm(n, generator=gen).numpy()
    cut = int(valid_pct * n)
    return perm[cut:].astype(np.int64), perm[:cut].astype(np.int64)


def _sorted_by_user_item(table: pd.DataFrame, rows: np.ndarray, user: str, item: str) -> np.ndarray:
    """Rows ordered as GroupLens's mku.sh sorts its files (user, then item, numerically)."""
    sub = table.iloc[rows]
    order = np.lexsort((sub[item].to_numpy(), sub[user].to_numpy()))
    return rows[order]


def ml100k_split(table: pd.DataFrame, name: str, user: str = "user", item: str = "item") -> Split:
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
    n_users, n_items = table[user].nunique(), table[item].nunique()
    if (n_users, n_items) != (943, 1682):
        raise CollabkitError(
            f"split {name!r} is defined on ML-100k (943 users, 1682 items); this table has "
            f"{n_users:,} users and {n_items:,} items"
        )
    n = len(table)
    rows = np.arange(n, dtype=np.int64)
    if name.startswith("u") and name[1:].isdigit():
        i = int(name[1:])
        test_mask = (rows >= (i - 1) * 20_000) & (rows < i * 20_000)
    else:
        lo, hi = (0, 10) if name == "ua" else (10, 20)
        rank = table.groupby(user, sort=False).cumcount().to_numpy()
        test_mask = (rank >= lo) & (rank < hi)
    return (
        _sorted_by_user_item(table, rows[~test_mask], user, item),
        _sorted_by_user_item(table, rows[test_mask], user, item),
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


def _timestamps(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        have = ", ".join(map(str, table.columns))
        raise CollabkitError(f"a time split needs a timestamp column {column!r}; the table has: {have}")
    return table[column].to_numpy()


def last_n_per_user(
    table: pd.DataFrame, n: int = 1, user: str = "user", timestamp: str = "timestamp"
) -> Split:
    """Each user's `n` latest ratings (by timestamp, then file order) are held out."""
    if n < 1:
        raise CollabkitError(f"n must be at least 1, got {n}")
    order = np.lexsort((np.arange(len(table)), _timestamps(table, timestamp)))
    users = table[user].to_numpy()[order]
    rank_from_end = pd.Series(users).groupby(users, sort=False).cumcount(ascending=False).to_numpy()
    valid = np.sort(order[rank_from_end < n]).astype(np.int64)
    train = np.sort(order[rank_from_end >= n]).astype(np.int64)
    return train, valid


def recent_per_user(
    table: pd.DataFrame, share: float = 0.2, user: str = "user", timestamp: str = "timestamp"
) -> Split:
    """Each user's latest `share` of their ratings (rounded down; by timestamp, then file order) is
    held out: the per-user time split of the ranking literature."""
    order = np.lexsort((np.arange(len(table)), _timestamps(table, timestamp)))
    users = pd.Series(table[user].to_numpy()[order])
    grouped = users.groupby(users.to_numpy(), sort=False)
    rank_from_end = grouped.cumcount(ascending=False).to_numpy()
    held = np.floor(share * grouped.transform("size").to_numpy()).astype(np.int64)
    mask = rank_from_end < held
    return np.sort(order[~mask]).astype(np.int64), np.sort(order[mask]).astype(np.int64)


def time_cutoff(
    table: pd.DataFrame, cutoff: float | None = None, valid_pct: float = 0.2, timestamp: str = "timestamp"
) -> Split:
    """Ratings at or after `cutoff` (a timestamp) are held out; by default the latest valid_pct."""
    ts = _timestamps(table, timestamp)
    if cutoff is None:
        if not 0 < valid_pct < 1:
            raise CollabkitError(f"valid_pct must be above 0 and below 1 for a time split, got {valid_pct}")
        cutoff = float(np.quantile(ts, 1 - valid_pct, method="higher"))
    mask = ts >= cutoff
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def make_split(
    table: pd.DataFrame,
    split: str | SplitSpec = "random",
    *,
    valid_pct: float = 0.2,
    seed: int | None = None,
    fold: int = 0,
    k: int = 5,
    last_n: int = 1,
    cutoff: float | None = None,
) -> Split:
    """One split by name (settings as keywords) or by `SplitSpec` (which carries the column names)."""
    spec = (
        split if isinstance(split, SplitSpec) else SplitSpec(split, valid_pct, seed, fold, k, last_n, cutoff)
    )
    cols = {"user": "user", "item": "item", "timestamp": "timestamp", **spec.columns}
    n = len(table)
    if spec.kind == "random":
        return random_split(n, spec.valid_pct, spec.seed)
    if spec.kind in ML100K_SPLITS:
        return ml100k_split(table, spec.kind, cols["user"], cols["item"])
    if spec.kind == "kfold":
        if spec.k > n:
            raise CollabkitError(f"k must be at most the number of rows ({n}), got {spec.k}")
        return list(kfold(n, spec.k, spec.seed))[spec.fold]
    if spec.kind == "last":
        return last_n_per_user(table, spec.last_n, cols["user"], cols["timestamp"])
    if spec.kind == "recent":
        return recent_per_user(table, spec.valid_pct, cols["user"], cols["timestamp"])
    return time_cutoff(table, spec.cutoff, spec.valid_pct, cols["timestamp"])
