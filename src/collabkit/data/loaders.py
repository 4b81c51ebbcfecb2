"""Minibatches sliced from index tensors, and the chapter's `CollabDataLoaders`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.splits import SplitSpec, make_split
from collabkit.data.tables import Duplicates, apply_duplicates, day_numbers, read_ratings
from collabkit.data.vocab import UnknownIdEncoding, Vocab, encode_pairs
from collabkit.display import shown
from collabkit.errors import CollabkitError, DataError

EPOCH_COPY_BYTES = 2**26  # x above this (4M rows): batches gathered alone, no shuffled copy of the table


class DataLoader:
    """(x, y) minibatches as views into tensors: x is (B, 2) user/item indices, y is (B,) ratings.

    A shuffled epoch permutes the rows once and then slices; there is no per-row Python work, which
    is what makes small batches cheap. Past `EPOCH_COPY_BYTES` of indices each batch is gathered
    through the permutation instead (the same batches), so a big table is never held twice.
    `shard(rank, world)` gives one process its own batches.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        bs: int = 64,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if bs < 1:
            raise CollabkitError(f"batch size must be at least 1, got {bs}")
        self.x, self.y, self.bs = x, y, int(bs)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.rank, self.world = 0, 1

    @property
    def n(self) -> int:
        return len(self.y)

    def __len__(self) -> int:
        return len(self._my_batches())

    def _my_batches(self) -> range:
        """This process's batches: every `world`-th one, the same count in every process (a step
        waits for all of them), so up to world-1 trailing batches of an epoch are dropped."""
        nb = self._n_batches()
        if self.world == 1:
            return range(nb)
        return range(self.rank, (nb // self.world) * self.world, self.world)

    def _n_batches(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def epoch_tensors(self) -> tuple[Tensor, Tensor]:
        """This epoch's (x, y), permuted when shuffling: one gather, then only views."""
        if not self.shuffle:
            return self.x, self.y
        perm = self._permutation()
        return self.x[perm], self.y[perm]

    def _permutation(self) -> Tensor:
        # int32 halves the index (100 MB at 25M rows) and draws the same order as int64 from a seed
        dtype = torch.int32 if self.n < 2**31 else torch.int64
        return torch.randperm(self.n, generator=self.generator, dtype=dtype).to(self.x.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.shuffle and self.x.element_size() * self.x.numel() > EPOCH_COPY_BYTES:
            perm = self._permutation()  # a big table: each batch gathered alone, no second copy of it
            for b in self._my_batches():
                rows = perm[b * self.bs : (b + 1) * self.bs]
                yield self.x[rows], self.y[rows]
            return
        xs, ys = self.epoch_tensors()
        for b in self._my_batches():
            i = b * self.bs
            yield xs[i : i + self.bs], ys[i : i + self.bs]

    def one_batch(self) -> tuple[Tensor, Tensor]:
        """The first batch of an epoch."""
        return next(iter(self))

    def to(self, device: str | torch.device) -> DataLoader:
        """Move the tensors once, so batches need no copies."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def shard(self, rank: int, world: int) -> DataLoader:
        """Give this process every `world`-th batch starting at `rank` (same permutation on all)."""
        self.rank, self.world = rank, world
        return self


def _one_per_pair(
    ratings: pd.DataFrame, user: str, item: str, rating: str, timestamp: str, duplicates: Duplicates
) -> pd.DataFrame:
    """`ratings` with one row per (user, item) pair by the rule `duplicates` (the reader's rule,
    `apply_duplicates`); the same object when there are no duplicates."""
    view = pd.DataFrame(
        {
            "user": ratings[user].to_numpy(),
            "item": ratings[item].to_numpy(),
            "rating": pd.to_numeric(ratings[rating], errors="coerce").to_numpy(dtype="float64"),
            "row": np.arange(len(ratings)),
        }
    )
    if timestamp in ratings.columns:
        view["timestamp"] = ratings[timestamp].to_numpy()
    kept = apply_duplicates(view, duplicates)
    if kept.attrs["duplicates_dropped"] == 0:
        ratings.attrs["duplicates_dropped"] = 0
        ratings.attrs["duplicates_kept"] = kept.attrs.get("duplicates_kept", 0)
        return ratings
    out = ratings.iloc[kept["row"].to_numpy()].reset_index(drop=True)
    if duplicates == "mean":
        out[rating] = kept["rating"].to_numpy()
    out.attrs = {**ratings.attrs, "duplicates_dropped": kept.attrs["duplicates_dropped"]}
    return out


class CollabDataLoaders:
    """Training and validation batches of a ratings table, with the vocabularies that encoded it.

    `dls.classes[user_name]` and `dls.classes[item_name]` list the raw ids in index order (index 0
    is `#na#`); `dls.train` and `dls.valid` iterate over (x, y) batches.
    """

    def __init__(
        self,
        train: DataLoader,
        valid: DataLoader,
        classes: dict[str, Vocab],
        *,
        user_name: str,
        item_name: str,
        rating_name: str,
        table: pd.DataFrame | None = None,
        train_rows: np.ndarray | None = None,
        valid_rows: np.ndarray | None = None,
        split: SplitSpec | None = None,
    ) -> None:
        self.train, self.valid = train, valid
        self.classes = classes
        self.user_name, self.item_name, self.rating_name = user_name, item_name, rating_name
        self.table, self.train_rows, self.valid_rows = table, train_rows, valid_rows
        self.split = split  # how the rows were split; None when rows were given directly
        self._titles: dict[Any, str] | None = None

    def __repr__(self) -> str:
        split = self.split.describe() if self.split is not None else "rows given"
        kept = self.duplicates_kept
        repeats = f"; {kept:,} rows repeat a (user, item) pair, kept as ratings of their own" if kept else ""
        return (
            f"CollabDataLoaders({self.train.n:,} train and {self.valid.n:,} valid ratings; "
            f"{self.n_users - 1:,} users, {self.n_items - 1:,} items; bs {self.bs}; split {split}{repeats})"
        )

    @property
    def duplicates_kept(self) -> int:
        """Rows that repeat a (user, item) pair and were kept (duplicates="keep", the default here)."""
        return int(self.table.attrs.get("duplicates_kept", 0)) if self.table is not None else 0

    @property
    def loaders(self) -> list[DataLoader]:
        return [self.train, self.valid]

    def __getitem__(self, i: int) -> DataLoader:
        return self.loaders[i]

    @property
    def user_vocab(self) -> Vocab:
        return self.classes[self.user_name]

    @property
    def item_vocab(self) -> Vocab:
        return self.classes[self.item_name]

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def bs(self) -> int:
        return self.train.bs

    def rating_range(self) -> tuple[float, float]:
        """Lowest and highest rating in the training rows."""
        y = self.train.y
        return float(y.min()), float(y.max())

    def train_days(self) -> np.ndarray | None:
        """Each training row's day (days since 1970, UTC; `train.x`'s order), or None where the
        table has no timestamp column (models with day effects read it)."""
        table, rows = self.table, self.train_rows
        if table is None or rows is None or "timestamp" not in table.columns:
            return None
        return day_numbers(table["timestamp"].iloc[rows])

    def rating_levels(self) -> list[float]:
        """The distinct ratings of the training rows, ascending (the classifier's classes)."""
        return sorted(float(v) for v in torch.unique(self.train.y.cpu()).tolist())

    def one_batch(self) -> tuple[Tensor, Tensor]:
        """A batch of the training set: x of shape (bs, 2), y of shape (bs,)."""
        return self.train.one_batch()

    def show_batch(self, max_n: int = 10, show: bool = True) -> pd.DataFrame | None:
        """The first rows of a training batch with raw ids (titles where known), as fastai's.

        Shown once (displayed in a notebook, printed elsewhere) and None returned; `show=False`
        returns the table instead.
        """
        x, y = self.one_batch()
        x, y = x[:max_n].cpu(), y[:max_n].cpu()
        frame = pd.DataFrame(
            {
                self.user_name: self.user_vocab.decode(x[:, 0].tolist()),
                self.item_name: self.titles_of(x[:, 1].tolist()),
                self.rating_name: y.tolist(),
            }
        )
        return shown(frame, show)

    def titles_of(self, item_idx: list[int]) -> list[Any]:
        """Titles of item indices where the table has a `title` column, else the raw item ids."""
        ids = self.item_vocab.decode(item_idx)
        if self.table is None or "title" not in self.table.columns or self.item_name == "title":
            return ids
        if self._titles is None:
            pairs = self.table[[self.item_name, "title"]].drop_duplicates(self.item_name)
            self._titles = dict(
                zip(pairs[self.item_name].tolist(), pairs["title"].astype(str).tolist(), strict=False)
            )
        return [self._titles.get(i, i) for i in ids]

    def test_dl(self, table: pd.DataFrame, bs: int = 65536) -> DataLoader:
        """A DataLoader over raw-id rows (the user and item columns; the rating column if present),
        for `learn.get_preds(dl=...)`. Ids the vocabulary lacks map to `#na#`, as in fastai."""
        for col in (self.user_name, self.item_name):
            if col not in table.columns:
                raise DataError(
                    f"no column {col!r} in the table; it has: {', '.join(map(str, table.columns))}"
                )
        x = self.encode(table[self.user_name], table[self.item_name])
        y = (
            torch.tensor(pd.to_numeric(table[self.rating_name]).to_numpy(dtype="float32"))
            if self.rating_name in table.columns
            else torch.full((len(table),), float("nan"))
        )
        return DataLoader(x, y, bs=bs)

    def encode(self, users: Any, items: Any, unknown: UnknownIdEncoding = "na") -> Tensor:
        """(N, 2) index tensor for raw user and item ids."""
        return torch.from_numpy(encode_pairs(self.user_vocab, self.item_vocab, users, items, unknown))

    @classmethod
    def from_df(
        cls,
        ratings: pd.DataFrame,
        valid_pct: float = 0.2,
        user_name: str | None = None,
        item_name: str | None = None,
        rating_name: str | None = None,
        seed: int | None = None,
        bs: int = 64,
        *,
        split: str | SplitSpec = "random",
        valid_rows: np.ndarray | None = None,
        train_rows: np.ndarray | None = None,
        shuffle_seed: int | None = None,
        timestamp_name: str = "timestamp",
        duplicates: Duplicates = "keep",
        **split_kwargs: Any,
    ) -> CollabDataLoaders:
        """Encode users and items and split the rows, as fastai's `CollabDataLoaders.from_df`.

        Columns default to fastai's: user = first, item = second, rating = third. The vocabularies
        hold every id of the table (as fastai's do), so an item seen only in validation still has
        an index. `split` picks any split of `collabkit.data.splits.make_split`; or pass
        `train_rows`/`valid_rows` directly.

        Checked as the file reader checks: no empty (NaN/None) user or item id, ratings finite
        numbers (not booleans), and a repeated (user, item) pair follows `duplicates`, as
        `collabkit.data.tables.apply_duplicates` says: kept by default as a rating of its own, as
        fastai keeps it (the chapter's `item_name="title"` merges twin titles into one item, which
        repeats 307 pairs of ML-100k) and counted in the repr and `dls.duplicates_kept`; "error"
        refuses, "last" or "mean" keep one per pair. A file read by `load_ratings` is refused by
        default instead: there a repeated pair is a data error, not a choice of item column.
        """
        if not isinstance(ratings, pd.DataFrame):
            raise CollabkitError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
        cols = list(ratings.columns)
        if len(cols) < 3 and None in (user_name, item_name, rating_name):
            raise DataError(f"need user, item and rating columns; the table has {cols}")
        user_name = user_name or cols[0]
        item_name = item_name or cols[1]
        rating_name = rating_name or cols[2]
        for role, name in (("user", user_name), ("item", item_name), ("rating", rating_name)):
            if name not in ratings.columns:
                raise DataError(f"no {role} column {name!r}; the table has: {', '.join(map(str, cols))}")
        for role, name in (("user", user_name), ("item", item_name)):
            empty = ratings[name].isna().to_numpy()
            if empty.any():
                pos = int(np.flatnonzero(empty)[0])
                raise DataError(f"empty {role} id (NaN or None) in row {pos}", column=name)
        if pd.api.types.is_bool_dtype(ratings[rating_name]) or (
            ratings[rating_name].dtype == object
            and any(isinstance(v, (bool, np.bool_)) for v in ratings[rating_name])
        ):
            values = ratings[rating_name].tolist()
            pos = next(i for i, v in enumerate(values) if isinstance(v, (bool, np.bool_)))
            raise DataError(f"rating {values[pos]!r} in row {pos} is not a number", column=rating_name)
        before = len(ratings)
        ratings = _one_per_pair(ratings, user_name, item_name, rating_name, timestamp_name, duplicates)
        if len(ratings) != before and (train_rows is not None or valid_rows is not None):
            raise DataError(
                f"duplicates={duplicates!r} dropped {before - len(ratings):,} rows, so the train_rows/"
                "valid_rows given no longer point at the same rows; drop the duplicates before choosing rows"
            )
        y_all = pd.to_numeric(ratings[rating_name], errors="coerce").to_numpy(dtype="float32")
        if not np.isfinite(y_all).all():
            pos = int(np.flatnonzero(~np.isfinite(y_all))[0])
            raise DataError(
                f"rating {ratings[rating_name].iloc[pos]!r} in row {pos} is not a finite number",
                column=rating_name,
            )
        spec: SplitSpec | None = None
        if train_rows is None or valid_rows is None:
            columns = {"user": user_name, "item": item_name, "timestamp": timestamp_name}
            if isinstance(split, SplitSpec):
                spec = SplitSpec.from_dict({**split.to_dict(), "columns": columns})
            else:
                spec = SplitSpec(split, valid_pct, seed, columns=columns, **split_kwargs)
            train_rows, valid_rows = make_split(ratings, spec)
        if len(train_rows) == 0:
            raise DataError(
                f"the split leaves no training rows ({len(ratings):,} rows in the table, "
                f"{len(valid_rows):,} held out); nothing to train on"
            )
        classes = {
            user_name: Vocab.from_values(ratings[user_name], name=user_name),
            item_name: Vocab.from_values(ratings[item_name], name=item_name),
        }
        x = torch.from_numpy(
            encode_pairs(classes[user_name], classes[item_name], ratings[user_name], ratings[item_name])
        )
        y = torch.from_numpy(np.array(y_all, dtype=np.float32))
        tr, va = torch.from_numpy(np.asarray(train_rows)), torch.from_numpy(np.asarray(valid_rows))
        shuffle_seed = seed if shuffle_seed is None else shuffle_seed
        # as fastai: the last partial batch is dropped in training (a batch of one breaks BatchNorm)
        train = DataLoader(x[tr], y[tr], bs=bs, shuffle=True, seed=shuffle_seed, drop_last=len(tr) > bs)
        valid = DataLoader(x[va], y[va], bs=max(bs, 4096), shuffle=False)
        return cls(
            train,
            valid,
            classes,
            user_name=user_name,
            item_name=item_name,
            rating_name=rating_name,
            table=ratings,
            train_rows=np.asarray(train_rows),
            valid_rows=np.asarray(valid_rows),
            split=spec,
        )

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        user_name: str = "user",
        item_name: str = "item",
        rating_name: str = "rating",
        timestamp_name: str | None = None,
        sep: str | None = None,
        **kwargs: Any,
    ) -> CollabDataLoaders:
        """Read a CSV/TSV/Parquet ratings file (checked cell by cell), then `from_df`."""
        table = read_ratings(
            path,
            user=user_name,
            item=item_name,
            rating=rating_name,
            timestamp=timestamp_name,
            sep=sep,
        )
        return cls.from_df(table, user_name="user", item_name="item", rating_name="rating", **kwargs)
