"""What the ranking families share: the interaction matrix, the "score" protocol defaults, and the
`values` setting (which ratings count, and how much).

A ranking model learns which items a user will pick, not how many stars they would give: it is
fitted in closed form (or by alternating solves) on the (binarised) interaction matrix, so it has
`score_kind = "score"` (the facade refuses `predict` for it and labels its lists as scores) and
`trains_by_gradient = False` (`train` calls `fit_direct(x, y)` once with every training pair).

The interaction matrix is sparse (`models.sparse.CSR`, memory in proportion to the ratings) and is
never saved: a family saves only what it learns (factors, an item-item matrix, neighbour lists) and
rebuilds its interactions from the training rows the model folder keeps (`attach_training`, which
`load_model` calls). No family allocates users x items densely; rows are made a block of users at
a time.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel, ModelConfig
from collabkit.models.sparse import CSR, blocks


class RankingModel(CollabModel):
    """Base of the ranking families: typed settings (`config.settings`); scores, not ratings.

    A subclass sets `Settings` and implements `fit_direct`, `user_rows`, `item_side` (and, where
    scoring is not `rows @ side`, `score_block`), `item_vectors` and `fold_in`.
    """

    score_kind = "score"
    trains_by_gradient = False
    uses_interactions: ClassVar[bool] = False  # scores from the training interactions (`interactions`)

    def __init__(self, config: ModelConfig) -> None:
        self.n_users, self.n_items = config.n_users, config.n_items
        self.settings: Any = config.settings  # the family's own Settings, checked by ModelConfig
        self._interactions: CSR | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> CollabModel:
        return cls(config)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) ranking scores of (user, item) pairs x (B, 2); not ratings. Pairs go a block at a
        time: a block's scores are (block x block), of which the diagonal is kept."""
        out = torch.empty(len(x), device=x.device)
        for start in range(0, len(x), PAIR_BLOCK):
            part = x[start : start + PAIR_BLOCK]
            raw = self.score_block(self.user_rows(part[:, 0]), self.item_side(part[:, 1]))
            out[start : start + len(part)] = raw.diagonal()
        return out

    # -- the training interactions, rebuilt rather than saved ------------------------------------
    def attach_training(self, x: Tensor, y: Tensor) -> None:
        if self.uses_interactions:
            self._interactions = self.make_interactions(x.to(self.device), y.to(self.device))

    def make_interactions(self, x: Tensor, y: Tensor) -> CSR:
        """The (n_users, n_items) matrix this family scores from; see `interaction_csr`."""
        s = self.settings
        return interaction_csr(x, y, self.n_users, self.n_items, s.values, getattr(s, "min_rating", None))

    @classmethod
    def upgrade_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        return {k: v for k, v in shapes.items() if not _dense_interactions(k)}

    @classmethod
    def upgrade_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Before the interactions were sparse, they were saved dense ("interactions"): dropped,
        since `attach_training` rebuilds them from the folder's training rows."""
        return {k: v for k, v in state.items() if not _dense_interactions(k)}

    @property
    def interactions(self) -> CSR:
        """The training interactions (CSR); refused before `fit_direct` or `attach_training`."""
        if self._interactions is None:
            raise CollabkitError(
                f"{self.name}: the model has no training interactions yet; fit it, or load it with "
                "load_model (which rebuilds them from the folder's training rows)"
            )
        return self._interactions

    @property
    def device(self) -> torch.device:
        b = next(self.buffers(), None)
        return b.device if b is not None else torch.device("cpu")

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)  # .to(device) moves what was derived with the buffers
        for name, value in list(vars(self).items()):
            if isinstance(value, CSR):
                setattr(self, name, CSR(fn(value.indptr), fn(value.indices), fn(value.values), value.n_cols))
            elif isinstance(value, Tensor) and name.startswith("_"):
                setattr(self, name, fn(value))
        return out

    def check_fit_input(self, x: Tensor, y: Tensor) -> None:
        """Refuse training pairs that do not fit the model's users and items."""
        if x.ndim != 2 or x.shape[1] != 2 or len(x) != len(y):
            raise CollabkitError(
                f"{self.name}: fit_direct needs x (N, 2) user/item indices and y (N,) ratings, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if len(x) == 0:
            raise CollabkitError(f"{self.name}: no training ratings to fit on")
        if int(x.min()) < 0 or int(x[:, 0].max()) >= self.n_users or int(x[:, 1].max()) >= self.n_items:
            raise CollabkitError(
                f"{self.name}: training indices outside the model's {self.n_users} users and "
                f"{self.n_items} items (the model was built for another table)"
            )

    def check_fold_in(self, item_idx: Tensor, ratings: Tensor) -> None:
        if item_idx.ndim != 1 or item_idx.shape != ratings.shape:
            raise CollabkitError(
                f"{self.name}: fold_in needs item indices and ratings of one length, "
                f"got {tuple(item_idx.shape)} and {tuple(ratings.shape)}"
            )
        if len(item_idx) and (int(item_idx.min()) < 0 or int(item_idx.max()) >= self.n_items):
            raise CollabkitError(f"{self.name}: fold_in item indices outside 0..{self.n_items - 1}")


def _dense_interactions(key: str) -> bool:
    return key == "interactions" or key.endswith(".interactions")


PAIR_BLOCK = 1024  # (user, item) pairs scored at once by `forward`

Values = Literal["binary", "rating"]
VALUES_HELP = "interaction values: 1, or the rating"


def values_field(default: Values) -> Any:
    """The `values` setting: a rated cell counts 1, or its rating."""
    return Field(default, description=VALUES_HELP)


def min_rating_field() -> Any:
    """The `min_rating` setting: which ratings count as interactions at all."""
    return Field(
        None, description="count only ratings at or above this as interactions (default: every rating)"
    )


def kept_ratings(x: Tensor, y: Tensor, min_rating: float | None) -> tuple[Tensor, Tensor]:
    """The training pairs that count as interactions: those rated at least `min_rating` (all with
    None). A threshold that keeps none is refused: a model of no interactions scores every item 0."""
    if min_rating is None or len(y) == 0:
        return x, y
    keep = y >= min_rating
    if not bool(keep.any()):
        raise CollabkitError(
            f"min_rating {min_rating:g} keeps none of the {len(y):,} training ratings (they run "
            f"{float(y.min()):g}..{float(y.max()):g}); give a lower min_rating, or leave it out to "
            "count every rating"
        )
    return x[keep], y[keep]


def interaction_csr(
    x: Tensor, y: Tensor, n_users: int, n_items: int, values: str = "binary", min_rating: float | None = None
) -> CSR:
    """(n_users, n_items) CSR: 1 (or the rating, `values="rating"`) where the user rated the item in
    training (at least `min_rating`, when given); a repeated pair keeps its last rating."""
    x, y = kept_ratings(x, y, min_rating)
    vals = torch.ones(len(x), device=x.device) if values == "binary" else y.float()
    return CSR.from_pairs(x[:, 0], x[:, 1], vals, n_users, n_items)


def interaction_row(
    item_idx: Tensor,
    ratings: Tensor,
    n_items: int,
    device: torch.device,
    values: str = "binary",
    min_rating: float | None = None,
) -> Tensor:
    """(n_items,) float32: a new user's interaction vector, as `interaction_csr` makes a row."""
    item_idx, ratings = item_idx.to(device), ratings.to(device).float()
    if min_rating is not None:
        keep = ratings >= min_rating
        item_idx, ratings = item_idx[keep], ratings[keep]
    row = torch.zeros(n_items, device=device)
    row[item_idx] = 1.0 if values == "binary" else ratings
    return row


def cosine_top_k(m: CSR, k: int, shrink: float, budget: int = 2**25) -> tuple[Tensor, Tensor]:
    """Each row's k most cosine-similar other rows of `m`: (n_rows, k) indices and similarities.

    Shrinkage (Koren 2008) pulls the similarity of rarely co-rated pairs towards zero:
    x.y / (|x||y| + shrink). Negative similarities count as 0 (no neighbour); a row is not its own
    neighbour. The dot products come from co-occurrences (`CSR.gram_rows`), a block of rows at a
    time sized so that neither the entries touched nor the (block x n_rows) similarities pass
    `budget`: the cost follows the ratings, never n_rows^2 x n_cols.
    """
    n, k = m.n_rows, min(k, m.n_rows)
    dev = m.values.device
    norms = m.row_norms()
    by_col = m.transpose()
    idx = torch.zeros(n, k, dtype=torch.long, device=dev)
    sims = torch.zeros(n, k, device=dev)
    for start, stop in blocks(m.gram_work(by_col), budget, n):
        rows = torch.arange(start, stop, device=dev)
        dots = m.gram_rows(rows, by_col)  # (b, n)
        sim = dots / (norms[rows, None] * norms[None, :] + shrink).clamp_min(1e-12)
        sim[torch.arange(len(rows), device=dev), rows] = 0.0
        top, at = sim.topk(k, dim=1)
        idx[rows], sims[rows] = at, top.clamp_min(0.0)
    return idx, sims


def neighbour_csr(idx: Tensor, sims: Tensor, n_cols: int) -> CSR:
    """The (n_rows, n_cols) CSR of neighbour lists: row r holds sims[r] at columns idx[r]."""
    rows = torch.arange(len(idx), device=idx.device).repeat_interleave(idx.shape[1])
    return CSR.from_pairs(rows, idx.reshape(-1), sims.reshape(-1), len(idx), n_cols)


def available_memory() -> int:
    """Bytes this machine can still give (MemAvailable), or 0 where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB"
