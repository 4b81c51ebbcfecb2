"""A trained model with everything needed to use it honestly: the one object downstream code takes.

`TrainedModel` holds the network, its settings, the vocabularies (raw id <-> index), item titles,
the training interactions (so recommendations leave out what a user rated, and an evaluation can
check that no test row was trained on), the split it was made with, a fingerprint of the table it
came from, and its training history and results. `collabkit.persist` saves and loads it;
`Recommender`, interpretation, evaluation and the report read it.

What every query needs is computed once, on first use, and kept (implicit keeps one `user_items`
CSR and its item norms the same way): the seen-items matrix, the id resolver, the rating counts and
means, and the unit item and user vectors. They assume the model and its training rows no longer
change: after training further, take a new bundle (`trained_from_learner`).
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

from collabkit.data.resolver import IdResolver
from collabkit.data.splits import SplitSpec
from collabkit.data.vocab import Vocab
from collabkit.defaults import MIN_COUNT as MIN_COUNT  # re-exported: where callers look for it
from collabkit.errors import CollabkitError
from collabkit.models import CollabModel, ModelConfig
from collabkit.models.custom import CustomModule
from collabkit.models.sparse import CSR, unit_rows


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
    # how the table was read, for `evaluate MODEL` with no --data: the file's own column names
    # ({"user": "reader", ...}) and the duplicates rule; empty for a DataFrame given directly
    reading: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, table: pd.DataFrame, name: str, user: str, item: str, rating: str,
        reading: dict[str, Any] | None = None,
    ) -> DataInfo:  # fmt: skip
        return cls(
            name,
            str(table.attrs.get("source", name)),
            len(table),
            table_fingerprint(table, user, item, rating),
            dict(reading or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_fingerprint(
    table: pd.DataFrame, user: str = "user", item: str = "item", rating: str = "rating"
) -> str:
    """sha256 (hex, 16 digits) of a table's user, item and rating columns, in row order."""
    hashed = pd.util.hash_pandas_object(table[[user, item, rating]], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class SeenItems:
    """The training interactions by user, in compressed-row form (CSR), built once per model.

    User `u`'s rated items are `items[indptr[u]:indptr[u + 1]]`, in training order, with their
    ratings in `ratings` at the same positions.
    """

    indptr: Tensor  # (n_users + 1,) int64
    items: Tensor  # (N,) int64 item indices, grouped by user
    ratings: Tensor  # (N,) float32

    @classmethod
    def of(cls, train_x: Tensor, train_y: Tensor, n_users: int) -> SeenItems:
        """The matrix of (N, 2) user/item index pairs and their (N,) ratings."""
        x = train_x.cpu()
        order = torch.argsort(x[:, 0], stable=True)  # stable: a user's items keep training order
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(x[:, 0], minlength=n_users), 0)
        return cls(indptr, x[order, 1].contiguous(), train_y.cpu()[order].float().contiguous())

    def row(self, user_idx: int) -> tuple[Tensor, Tensor]:
        """(item indices, ratings) of one user's training ratings."""
        lo, hi = int(self.indptr[user_idx]), int(self.indptr[user_idx + 1])
        return self.items[lo:hi], self.ratings[lo:hi]

    def rating(self, user_idx: int, item_idx: int) -> float | None:
        """The user's (first) training rating of the item, or None if they gave none."""
        items, ratings = self.row(user_idx)
        hit = torch.nonzero(items == item_idx)
        return float(ratings[int(hit[0, 0])]) if len(hit) else None

    def pairs(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """(position in `users`, item index) of every training rating of `users` (B,)."""
        users = users.cpu()
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(users)), lengths)
        shift = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
        return rows, self.items[shift + torch.arange(len(shift))]


@dataclass
class TrainedModel:
    """A model with its vocabularies, training interactions, split, data and history.

    `config` is None for your own `nn.Module` wrapped by `collabkit.models.custom.CustomModule`:
    its settings are in your code, not in a family's config.
    """

    model: CollabModel
    config: ModelConfig | None
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
        """The model's family name (`custom` for your own module)."""
        return type(self.model).name

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
        """(n_items,) mean training rating of each item index (NaN for an item with none); kept."""
        return self._item_means

    def user_means(self) -> Tensor:
        """(n_users,) mean training rating of each user index (NaN for a user with none); kept."""
        return self._user_means

    @cached_property
    def _item_means(self) -> Tensor:
        sums = torch.bincount(
            self.train_x[:, 1].cpu(), weights=self.train_y.double().cpu(), minlength=len(self.items)
        )
        return (sums / self.item_counts).float()

    @cached_property
    def _user_means(self) -> Tensor:
        sums = torch.bincount(
            self.train_x[:, 0].cpu(), weights=self.train_y.double().cpu(), minlength=len(self.users)
        )
        return (sums / self.user_counts).float()

    @cached_property
    def global_mean(self) -> float:
        """The mean training rating (0 with no training rows): the fallback of an impossible prediction."""
        return float(self.train_y.double().mean()) if len(self.train_y) else 0.0

    @cached_property
    def seen(self) -> SeenItems:
        """The training interactions by user (CSR): what recommendations leave out, and the ratings
        an explanation quotes, without scanning every training row."""
        return SeenItems.of(self.train_x, self.train_y, len(self.users))

    @cached_property
    def resolver(self) -> IdResolver:
        """Raw ids and titles -> the ids the model knows (built once: it indexes every title)."""
        return IdResolver(self.users, self.items, self.item_titles, self.item_counts.numpy())

    @cached_property
    def unit_item_vectors(self) -> Tensor | CSR:
        """(n_items, k) float32 item vectors scaled to unit length (cosine neighbours), on the CPU.

        Raises:
            CollabkitError: the family has no item vectors (see `capabilities()`).
        """
        if not type(self.model).capabilities().item_vectors:
            raise CollabkitError(lacks(self, "item_vectors"))
        return _unit_rows(require_learned(self.model.item_vectors(), "item"))

    @cached_property
    def unit_user_vectors(self) -> Tensor | CSR:
        """(n_users, k) float32 user vectors scaled to unit length, on the CPU.

        Raises:
            CollabkitError: the family has no user vectors (see `capabilities()`).
        """
        if not type(self.model).capabilities().user_vectors:
            raise CollabkitError(lacks(self, "user_vectors"))
        return _unit_rows(require_learned(self.model.user_vectors(), "user"))

    def rating_range(self) -> tuple[float, float] | None:
        """The lowest and highest rating the model was trained on (None with no training rows).

        Computed once: every clipped prediction and every fold-in asks for it.
        """
        return self._rating_span

    @cached_property
    def _rating_span(self) -> tuple[float, float] | None:
        if len(self.train_y) == 0:
            return None
        return float(self.train_y.min()), float(self.train_y.max())

    def trained_pairs(self) -> np.ndarray:
        """(N,) int64 keys user_idx * n_items + item_idx of the training ratings, sorted."""
        x = self.train_x.cpu().numpy().astype(np.int64)
        return np.unique(x[:, 0] * len(self.items) + x[:, 1])


_LACKS = {
    "ratings": "ranks items but does not predict ratings",
    "item_vectors": "has no item vectors, so no similar items and no embedding map",
    "user_vectors": "has no user vectors, so no similar users",
    "biases": "has no biases in rating units",
    "fold_in": "cannot fold in a new user from their ratings",
    "explain": "has no additive explanation: its score does not split into parts that add up",
}
_ALTERNATIVE = {
    "ratings": "use a rating model (dotbias) for stars",
    "item_vectors": "use dotbias, ease, itemknn or ials for similar items",
    "user_vectors": "use dotbias or ials for similar users",
    "biases": "train a 'dotbias' model (collabkit train --model dotbias) to see biases",
    "fold_in": "recommend for a known user instead",
    "explain": "explain a 'dot' or 'dotbias' model",
}


def lacks(trained: TrainedModel, capability: str) -> str:
    """One line saying plainly that the model's family lacks `capability` (a `Capabilities` field)."""
    return f"model {trained.name!r} {_LACKS[capability]}; {_ALTERNATIVE[capability]}"


def require_learned(vectors: Tensor | CSR, side: str) -> Tensor | CSR:
    """`vectors`, refused when every one is zero: a dot model whose held-aside rows chose its
    biases-only start keeps no factors, and a cosine of zero vectors would rank noise."""
    if isinstance(vectors, Tensor) and vectors.numel() and not bool(vectors.detach().ne(0).any()):
        raise CollabkitError(
            f"the model's {side} factors are all zero: training kept its biases-only start (on the rows "
            f"held aside, every epoch predicted worse), so there are no {side} vectors to compare; "
            "train with --recipe chapter (or more data) for learned factors"
        )
    return vectors


def _unit_rows(table: Tensor | CSR) -> Tensor | CSR:
    return unit_rows(table.to("cpu") if isinstance(table, CSR) else table.detach().cpu())


def trained_from_learner(
    learn: Any, *, data: DataInfo | None = None, results: dict[str, Any] | None = None
) -> TrainedModel:
    """The bundle of a Learner and its data loaders: a model made by `collab_learner` (it knows its
    config), or your own module, wrapped by `CustomModule` (ratings only; saved by `learn.export`)."""
    config = learn.config
    model = learn.model
    if not isinstance(model, CollabModel):
        model, config = CustomModule(model, len(learn.dls.user_vocab), len(learn.dls.item_vocab)), None
    elif config is None:
        raise CollabkitError(
            f"this {type(model).__name__} was not built by collab_learner (or the command), so its "
            "settings are unknown; build it with collab_learner(dls, model=...)"
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
        model=model,
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
