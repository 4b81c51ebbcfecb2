"""Your own `nn.Module` behind the collabkit protocol, so `Recommender` and the service can use it.

A module whose `forward` takes (B, 2) user/item indices and returns (B,) or (B, 1) ratings is all
collabkit needs to predict and to rank: `CustomModule` scores a block of users against candidate
items by calling `forward` on every (user, candidate) pair, in chunks of at most `max_pairs` pairs,
so memory stays bounded whatever the catalogue. It knows nothing else about the module, so it
declares ratings only: no vectors (similar items, the map), no biases, no fold-in, no explanation.

    learn = Learner(dls, MyModel(n_users, n_items))   # train your own module
    learn.export("runs/mine")
    rec = Recommender.load("runs/mine", model=MyModel(n_users, n_items))
    rec.recommend(196, n=10); rec.predict([196], [242])

It is not a registered family: it is never built from a config, only wrapped around your instance.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel

DEFAULT_MAX_PAIRS = 2**16  # (user, item) pairs per forward call while ranking


class CustomModule(CollabModel):
    """A rating model made of any module mapping (B, 2) index pairs to (B,) or (B, 1) ratings."""

    name: ClassVar[str] = "custom"
    # ratings only: a module's insides are its own, so nothing beyond `forward` is offered
    has_item_vectors = False
    has_user_vectors = False
    can_fold_in = False
    trains_by_gradient = False  # trained by you, outside collabkit's workflows: no lr-find here

    def __init__(
        self, module: nn.Module, n_users: int, n_items: int, max_pairs: int = DEFAULT_MAX_PAIRS
    ) -> None:
        if isinstance(module, CollabModel):
            raise CollabkitError(
                f"{type(module).__name__} is already a collabkit model; use it directly, not wrapped"
            )
        if isinstance(max_pairs, bool) or int(max_pairs) != max_pairs or max_pairs < 1:
            raise CollabkitError(f"max_pairs must be a whole number of at least 1, got {max_pairs!r}")
        self.module = module
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.max_pairs = int(max_pairs)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) ratings of (B, 2) user/item index pairs, from the wrapped module."""
        out = self.module(x)
        if not isinstance(out, Tensor) or out.numel() != len(x) or out.ndim > 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise CollabkitError(
                f"{type(self.module).__name__}.forward returned {shape} for {len(x)} pairs; "
                "expected (B,) or (B, 1) ratings"
            )
        return out.reshape(-1)

    def item_vectors(self) -> Tensor:
        raise CollabkitError(
            f"your module {type(self.module).__name__} has no item vectors collabkit can read"
        )

    # -- scoring: rows are user indices, the item side is the candidate indices ------------------
    def user_rows(self, user_idx: Tensor) -> Tensor:
        return user_idx.reshape(-1, 1).long()  # (B, 1)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return item_idx.reshape(-1).long()  # (m,)

    def score_block(self, rows: Tensor, side: Tensor) -> Tensor:
        """(B, m) the module's ratings of every (user, candidate) pair, `max_pairs` pairs at a time."""
        users, items = rows.reshape(-1).long(), side.long()
        b, m = len(users), len(items)
        out = torch.empty(b * m, dtype=torch.float32, device=items.device)
        for start in range(0, b * m, self.max_pairs):
            flat = torch.arange(start, min(start + self.max_pairs, b * m), device=items.device)
            pairs = torch.stack([users[flat // m], items[flat % m]], dim=1)  # (P, 2)
            out[start : start + len(flat)] = self.forward(pairs).float()
        return out.reshape(b, m)
