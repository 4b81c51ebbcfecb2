"""Train/validation splits as researchers make them; each returns row positions (int64 arrays).

`SplitSpec` is a split written down: its kind, its settings and the table's column names. A saved
model keeps its spec, so evaluating it again rebuilds exactly the rows it was tested on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch

from collabkit.data.datasets import ML100K_RATINGS_FINGERPRINT
from collabkit.data.tables import BadTimestamp, excerpt, parse_timestamps
from collabkit.errors import CollabkitError

Split = tuple[np.ndarray, np.ndarray]  # (train rows, valid rows)
MAX_SEED = 2**32 - 1  # what every generator here (torch, NumPy) takes
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
    check_seed(spec.seed)
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


def check_seed(seed: object) -> None:
    """Raise CollabkitError unless `seed` is None or a whole number in 0..2**32-1."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise CollabkitError(f"seed must be a whole number from 0 to {MAX_SEED:,} (2**32-1), got {seed!r}")


def random_split(n: int, valid_pct: float = 0.2, seed: int | None = None) -> Split:
    """fastai's RandomSplitter: the same rows as fastai for the same seed."""
    check_seed(seed)
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
    if ml100k_fingerprint(table, user, item) != ML100K_RATINGS_FINGERPRINT:
        raise CollabkitError(
            f"split {name!r} is GroupLens's split of ML-100k's u.data in its file order; this table has "
            "100,000 rows but not u.data's (user, item, rating) rows in that order (reordered, filtered "
            "or edited?); load it with --data ml-100k, or use a random or kfold split"
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


def ml100k_fingerprint(table: pd.DataFrame, user: str = "user", item: str = "item") -> str | None:
    """sha256 of the table's (user, item, rating) rows in order, as float64; None if they are not
    numbers. Equal to `ML100K_RATINGS_FINGERPRINT` only for u.data's rows in u.data's order."""
    cols = (user, item, "rating")
    if any(c not in table.columns or not pd.api.types.is_numeric_dtype(table[c]) for c in cols):
        return None
    try:
        rows = np.stack([table[c].to_numpy(dtype="float64") for c in cols], axis=1)  # (n, 3)
    except (KeyError, TypeError, ValueError):
        return None
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


def _check_k(n: int, k: int) -> None:
    if isinstance(k, bool) or int(k) != k or not 2 <= k <= n:
        raise CollabkitError(
            f"k (the number of folds) must be a whole number from 2 to the number of rows ({n:,}), got {k}"
        )


def kfold_split(n: int, k: int = 5, seed: int | None = None, fold: int = 0) -> Split:
    """Fold `fold` of k shuffled folds (the same rows as `kfold`'s), built alone: memory is O(n)
    whatever k is."""
    _check_k(n, k)
    check_seed(seed)
    if not 0 <= fold < k:
        raise CollabkitError(f"fold must be in 0..{k - 1}, got {fold}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    size, extra = divmod(n, k)  # np.array_split's parts: the first `extra` hold one more row
    start = fold * size + min(fold, extra)
    part = perm[start : start + size + (fold < extra)]
    mask = np.ones(n, dtype=bool)
    mask[part] = False
    return np.flatnonzero(mask).astype(np.int64), np.sort(part)


def kfold(n: int, k: int = 5, seed: int | None = None) -> Iterator[Split]:
    """k shuffled folds: every row is in exactly one validation part (each built when reached)."""
    _check_k(n, k)
    check_seed(seed)
    for fold in range(k):
        yield kfold_split(n, k, seed, fold)


def _timestamps(table: pd.DataFrame, column: str) -> np.ndarray:
    """The column as numbers in time order: numbers, dates or datetimes (ISO text such as 2023-01-02
    becomes Unix seconds). Text that is neither is refused, never ordered as text."""
    if column not in table.columns:
        have = ", ".join(map(str, table.columns))
        raise CollabkitError(f"a time split needs a timestamp column {column!r}; the table has: {have}")
    try:
        return parse_timestamps(table[column], whole=False)
    except BadTimestamp as e:
        raise CollabkitError(
            f"a time split orders rows by column {column!r}, which must hold numbers or dates; "
            f"row {e.pos} holds {excerpt(table[column].iloc[e.pos])} ({e.message})"
        ) from None


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
        return kfold_split(n, spec.k, spec.seed, spec.fold)
    if spec.kind == "last":
        return last_n_per_user(table, spec.last_n, cols["user"], cols["timestamp"])
    if spec.kind == "recent":
        return recent_per_user(table, spec.valid_pct, cols["user"], cols["timestamp"])
    return time_cutoff(table, spec.cutoff, spec.valid_pct, cols["timestamp"])
