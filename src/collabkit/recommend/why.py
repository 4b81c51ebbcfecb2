"""Why an item is recommended to a new user: its bias, and the rated items whose vectors point its way.

Plain functions over a `Recommender`, so the command, the service and a notebook give the same
reasons. What a family can say is decided by its declared capabilities
(`type(model).capabilities()`): a family without item vectors names no close rated items, one
without biases gives no bias (None), never a number it does not have.

    new = rec.fold_in({"Star Wars (1977)": 5, "Titanic (1997)": 2})
    recs = rec.recommend_for_ratings(new, 10)
    why_recommended(rec, new, recs.items)     # one `Why` per recommended item
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.sparse import CSR, cosines
from collabkit.recommend.recommender import Recommender
from collabkit.recommend.results import NewUser

N_CLOSEST = 2  # rated items named per recommendation
BIAS_MIN_COUNT = 20  # ratings an item needs to be listed among the most and least liked, in a big catalogue


@dataclass(frozen=True)
class CloseRated:
    """A rated item whose vector points most nearly the recommended item's way."""

    item: Any
    title: str
    similarity: float  # cosine similarity of the two items' vectors
    your_rating: float


@dataclass(frozen=True)
class Why:
    """The reasons for one recommended item."""

    item: Any
    bias: float | None  # the item's bias (liked beyond anyone's taste); None: the family has none
    closest: list[CloseRated] = field(default_factory=list)  # most similar first


@dataclass(frozen=True)
class WhyTables:
    """What every `why_recommended` call needs, computed once per Recommender."""

    unit: Tensor | CSR | None  # (n_items, d) unit-length item vectors; None: the family has none
    bias: np.ndarray | None  # (n_items,) item biases; None: the family has none


def why_tables(rec: Recommender) -> WhyTables:
    """The unit item vectors and item biases of `rec`'s model, as far as its family declares them."""
    caps = type(rec.model).capabilities()
    unit = None
    if caps.item_vectors:
        try:
            unit = rec.trained.unit_item_vectors
        except CollabkitError:  # factors all zero (the biases-only start kept): no closest items
            unit = None
    bias = None
    if caps.biases:
        b = rec.model.item_biases()
        bias = None if b is None else b.detach().float().cpu().numpy().reshape(-1)
    return WhyTables(unit, bias)


def closest_rated(
    unit: Tensor | CSR | np.ndarray, rec_idx: np.ndarray, rated_idx: np.ndarray, k: int = N_CLOSEST
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item, the `k` rated items most cosine-similar to it.

    `unit` is (n_items, d) unit-length item vectors. Returns positions into `rated_idx` and their
    similarities, each (len(rec_idx), min(k, len(rated_idx))), most similar first (ties by position).
    """
    if len(rated_idx) == 0 or len(rec_idx) == 0:
        return np.zeros((len(rec_idx), 0), dtype=np.int64), np.zeros((len(rec_idx), 0), dtype=np.float32)
    sims = cosines(unit, rec_idx, rated_idx)  # (n_rec, n_rated)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def why_recommended(
    rec: Recommender,
    new: NewUser,
    items: Sequence[Any],
    *,
    k: int = N_CLOSEST,
    tables: WhyTables | None = None,
) -> list[Why]:
    """One `Why` per item of `items` (raw ids recommended to the folded-in user `new`), in order.

    The closest rated items are among the ratings the fold-in used (not those it ignored).
    Pass `tables` (from `why_tables`) to reuse them across calls.
    """
    tables = why_tables(rec) if tables is None else tables
    ignored = set(new.ignored)
    used = [(item, float(r)) for item, r in new.rated.items() if item not in ignored]
    rec_idx = rec.items.encode(list(items), "error") if len(items) else np.zeros(0, dtype=np.int64)
    rated_idx = rec.items.encode([i for i, _ in used], "error") if used else np.zeros(0, dtype=np.int64)
    if tables.unit is not None:
        pos, sims = closest_rated(tables.unit, rec_idx, rated_idx, k)
    else:
        pos, sims = np.zeros((len(rec_idx), 0), dtype=np.int64), np.zeros((len(rec_idx), 0))
    out = []
    for row, item in enumerate(items):
        closest = [
            CloseRated(used[p][0], rec.title(used[p][0]), float(s), used[p][1])
            for p, s in zip(pos[row], sims[row], strict=True)
        ]
        bias = None if tables.bias is None else float(tables.bias[rec_idx[row]])
        out.append(Why(item, bias, closest))
    return out


def bias_min_count(rec: Recommender, most: int = BIAS_MIN_COUNT) -> int:
    """The ratings an item needs to be listed among the most and least liked by bias.

    `most` (20) in a catalogue like MovieLens, where rarely rated items' biases are noise; the
    median item's count where that is lower (a small catalogue would otherwise list nothing).
    """
    counts = np.asarray(rec.item_counts)[1:]
    counts = counts[counts > 0]
    median = float(np.median(counts)) if len(counts) else 1.0
    return int(max(1, min(most, median)))


__all__ = [
    "CloseRated",
    "Why",
    "WhyTables",
    "bias_min_count",
    "closest_rated",
    "why_recommended",
    "why_tables",
]
