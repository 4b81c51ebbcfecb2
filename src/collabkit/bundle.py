"""A trained model with everything needed to use it honestly: the one object downstream code takes.

`TrainedModel` holds the network, its settings, the vocabularies (raw id <-> index), item titles,
the training interactions (so recommendations leave out what a user rated, and an evaluation can
check that no test row was trained on), the split it was made with, a fingerprint of the table it
came from, and its training history and results. `collabkit.persist` saves and loads it;
`Recommender`, interpretation, evaluation and the report read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.data.splits import SplitSpec
from collabkit.data.vocab import Vocab
from collabkit.models import CollabModel, ModelConfig

MIN_COUNT = 1  # an item (or user) needs this many training ratings to be an answer: fewer, and it is noise


@dataclass(frozen=True)
class DataInfo:
    """Which table a model was trained on: a name, where it came from, its size and a fingerprint.

    The fingerprint hashes the user, item and rating columns, so a model evaluated on another
    table (or another version of the same file) can say so.
    """

    name: str
    source: str
    n_rows: int
    fingerprint: str

    @classmethod
    def of(cls, table: pd.DataFrame, name: str, user: str, item: str, rating: str) -> DataInfo:
        return cls(
            name,
            str(table.attrs.get("source", name)),
            len(table),
            table_fingerprint(table, user, item, rating),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_fingerprint(
    table: pd.DataFrame, user: str = "user", item: str = "item", rating: str = "rating"
) -> str:
    """sha256 (hex, 16 digits) of a table's user, item and rating columns, in row order."""
    hashed = pd.util.hash_pandas_object(table[[user, item, rating]], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass
class TrainedModel:
    """A model with its vocabularies, training interactions, split, data and history."""

    model: CollabModel
    config: ModelConfig
    users: Vocab
    items: Vocab
    train_x: Tensor  # (N, 2) int64 user/item indices of the training ratings
    train_y: Tensor  # (N,) float32 ratings
    item_titles: dict[Any, str] = field(default_factory=dict)
    split: SplitSpec | None = None  # None: trained on rows given directly (no way to rebuild the test)
    data: DataInfo | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    results: dict[str, Any] = field(default_factory=dict)  # settings used and held-out figures

    @property
    def name(self) -> str:
        return self.config.model

    def __repr__(self) -> str:
        data = f" on {self.data.name}" if self.data is not None else ""
        return (
            f"TrainedModel({self.name}{data}: {len(self.users) - 1:,} users, {len(self.items) - 1:,} items, "
            f"{len(self.train_y):,} training ratings)"
        )

    @cached_property
    def item_counts(self) -> Tensor:
        """(n_items,) number of training ratings of each item index."""
        return torch.bincount(self.train_x[:, 1].cpu(), minlength=len(self.items))

    @cached_property
    def user_counts(self) -> Tensor:
        """(n_users,) number of training ratings of each user index."""
        return torch.bincount(self.train_x[:, 0].cpu(), minlength=len(self.users))

    def item_means(self) -> Tensor:
        """(n_items,) mean training rating of each item index (NaN for an item with none)."""
        sums = torch.bincount(
            self.train_x[:, 1].cpu(), weights=self.train_y.double().cpu(), minlength=len(self.items)
        )
        return (sums / self.item_counts).float()

    def user_means(self) -> Tensor:
        """(n_users,) mean training rating of each user index (NaN for a user with none)."""
        sums = torch.bincount(
            self.train_x[:, 0].cpu(), weights=self.train_y.double().cpu(), minlength=len(self.users)
        )
        return (sums / self.user_counts).float()

    def rating_range(self) -> tuple[float, float] | None:
        """The lowest and highest rating the model was trained on (None with no training rows)."""
        if len(self.train_y) == 0:
            return None
        return float(self.train_y.min()), float(self.train_y.max())

    def trained_pairs(self) -> np.ndarray:
        """(N,) int64 keys user_idx * n_items + item_idx of the training ratings, sorted."""
        x = self.train_x.cpu().numpy().astype(np.int64)
        return np.unique(x[:, 0] * len(self.items) + x[:, 1])


def trained_from_learner(
    learn: Any, *, data: DataInfo | None = None, results: dict[str, Any] | None = None
) -> TrainedModel:
    """The bundle of a Learner made by `collab_learner` (it knows its config) and its data loaders."""
    from collabkit.errors import CollabkitError

    config = getattr(learn, "config", None)
    if config is None or not isinstance(learn.model, CollabModel):
        raise CollabkitError(
            "only models built by collab_learner (or the command) can be exported; "
            "for your own nn.Module, save learn.model.state_dict() with safetensors"
        )
    dls = learn.dls
    titles: dict[Any, str] = {}
    table = dls.table
    if table is not None and "title" in table.columns and dls.item_name != "title":
        pairs = table[[dls.item_name, "title"]].drop_duplicates(dls.item_name)
        titles = dict(zip(pairs[dls.item_name].tolist(), pairs["title"].astype(str).tolist(), strict=False))
    if data is None and table is not None:
        data = DataInfo.of(
            table, str(table.attrs.get("name", "table")), dls.user_name, dls.item_name, dls.rating_name
        )
    return TrainedModel(
        model=learn.model,
        config=config,
        users=dls.user_vocab,
        items=dls.item_vocab,
        train_x=dls.train.x.cpu(),
        train_y=dls.train.y.cpu(),
        item_titles=titles,
        split=dls.split,
        data=data,
        history=[dict(row) for row in learn.history],
        results=dict(results or {}),
    )
