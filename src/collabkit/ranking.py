"""Ranking quality of top-k lists: plain functions over arrays, and one evaluation of a saved model.

The functions take `hits`, a (n_users, k) bool array that says whether the item at each rank is
relevant, and `n_relevant`, each user's number of relevant items; `hits_matrix` builds `hits`
from recommended and relevant item indices. Per-user values come back as arrays, so callers can
average, bootstrap or compare them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from collabkit.defaults import MIN_COUNT
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model
from collabkit.recommend import Recommender

if TYPE_CHECKING:
    from collabkit.bundle import TrainedModel


def hits_matrix(recommended: np.ndarray, relevant: Sequence[Any]) -> np.ndarray:
    """(n_users, k) bool: whether recommended[u, j] is among relevant[u] (item indices).

    `recommended` is (n_users, k) non-negative item indices, -1 for padding (never a hit);
    `relevant` holds one collection of item indices per user.
    """
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2 or len(rec) != len(relevant):
        raise CollabkitError(
            f"recommended must be (n_users, k) with one row per relevant set; got {rec.shape} "
            f"and {len(relevant)} sets"
        )
    lengths = np.array([len(r) for r in relevant], dtype=np.int64)
    rel_items = (
        np.concatenate([np.asarray(list(r), dtype=np.int64) for r in relevant])
        if lengths.sum()
        else np.zeros(0, np.int64)
    )
    width = int(max(rec.max(initial=0), rel_items.max(initial=0))) + 2
    rows = np.arange(len(rec), dtype=np.int64)
    rec_keys = rows[:, None] * width + (rec + 1)  # padding -1 -> offset 0, never a relevant key
    rel_keys = np.repeat(rows, lengths) * width + (rel_items + 1)
    return np.isin(rec_keys, rel_keys)


def precision_at_k(hits: np.ndarray) -> np.ndarray:
    """(n_users,) share of the k recommended items that are relevant (k = hits.shape[1])."""
    h = np.asarray(hits, dtype=bool)
    return h.sum(1) / h.shape[1]


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """(n_users,) share of each user's relevant items found in the top k (NaN with none)."""
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_rel > 0, np.asarray(hits, bool).sum(1) / n_rel, np.nan)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """(n_users,) binary-gain NDCG: DCG with 1/log2(rank + 1) discounts over the ideal DCG.

    The ideal list puts min(n_relevant, k) relevant items first; NaN for a user with none.
    """
    h = np.asarray(hits, dtype=np.float64)
    k = h.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    dcg = h @ discounts
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(np.asarray(n_relevant, dtype=np.int64), k)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(idcg > 0, dcg / idcg, np.nan))


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """(n_users,) AP@k: mean of precision@j at the ranks j of hits, over min(n_relevant, k).

    Its mean over users is MAP@k; NaN for a user with no relevant item.
    """
    h = np.asarray(hits, dtype=np.float64)
    k = h.shape[1]
    prec = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(np.asarray(n_relevant, dtype=np.float64), k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (prec * h).sum(1) / denom, np.nan)


def hit_rate_at_k(hits: np.ndarray) -> np.ndarray:
    """(n_users,) 1.0 where at least one of the top k is relevant, else 0.0."""
    return np.asarray(np.asarray(hits, dtype=bool).any(1), dtype=np.float64)


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the `n_items` candidate items that appear in at least one top-k list."""
    if n_items <= 0:
        return float("nan")
    rec = np.asarray(recommended)
    return float(len(np.unique(rec[rec >= 0])) / n_items)


def evaluate_ranking(
    model: TrainedModel | Recommender | str | Path,
    test: pd.DataFrame,
    k: int = 10,
    relevant_threshold: float = 4.0,
    *,
    min_count: int = MIN_COUNT,  # as recommend serves: the lists scored are the lists shown
    popularity_penalty: float = 0.0,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    baseline: bool = True,
) -> dict[str, Any]:
    """Precision, recall, NDCG, MAP and hit rate at k, and catalogue coverage, on held-out ratings.

    With `baseline`, the most-rated list (the `popular` model of the same training rows) is scored
    by the same protocol under `baseline`, and `beats_popular` says whether the model's NDCG beats
    it: a ranking model that does not has learned nothing a count could not tell.

    Each user's top k is ranked among every candidate item they did not rate in training (the
    model's saved training rows); candidates are items with at least `min_count` training ratings.
    `min_count` defaults to MIN_COUNT, what `recommend` (command, library and service) serves by
    default, so the lists scored are the lists users are shown; a relevant item with fewer ratings
    counts as a miss, as it would be one in a served list. Pass min_count=1 to rank every trained
    item (to compare with a library that does). The result names the `min_count` used, and a
    `note` when no item has that many ratings (every list is then empty).
    Relevant items are the user's held-out items rated at least `relevant_threshold`, and they
    all count towards recall even if the model cannot recommend them. Users with no training
    ratings ("cold") are not ranked; users with no relevant held-out item are ranked (for coverage)
    but left out of the averages, which is the usual convention; both are counted in `users`.
    Coverage is over the top-k lists of every ranked user. `random_precision@k` is what a random
    ordering of each user's candidates would score, for reference.
    """
    if isinstance(model, (str, Path)):
        rec = Recommender.load(model)
    elif isinstance(model, Recommender):
        rec = model
    else:
        rec = Recommender(model)  # a TrainedModel
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise CollabkitError(f"k must be a positive whole number, got {k!r}")
    k = int(k)
    for name, value in (
        ("relevant_threshold", relevant_threshold),
        ("popularity_penalty", popularity_penalty),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CollabkitError(f"{name} must be a finite number, got {value!r}")
    for col in (user_col, item_col, rating_col):
        if col not in test.columns:
            have = ", ".join(map(str, test.columns))
            raise CollabkitError(f"no column {col!r} in the test table; it has: {have}")

    u_idx = rec.users.encode(test[user_col], "na")
    i_idx = rec.items.encode(test[item_col], "na")
    ratings = pd.to_numeric(test[rating_col], errors="coerce").to_numpy(dtype=np.float64)
    warm_user = rec.user_counts.numpy()[u_idx] > 0
    warm_user[u_idx == 0] = False
    test_users = np.unique(u_idx[u_idx > 0])
    ranked = np.unique(u_idx[warm_user])  # user indices we rank for
    rel = (ratings >= relevant_threshold) & warm_user
    # distinct relevant items by raw id: items the model does not know all encode to index 0, and
    # must still count one each towards recall's denominator
    rel_frame = pd.DataFrame(
        {"u": u_idx[rel], "item": test[item_col].to_numpy()[rel], "i": i_idx[rel]}
    ).drop_duplicates(["u", "item"])
    n_rel_by_user = rel_frame.groupby("u").size()
    known = rel_frame[rel_frame["i"] > 0]
    rel_sets = known.groupby("u")["i"].apply(np.asarray)
    relevant = [rel_sets.get(u, np.zeros(0, np.int64)) for u in ranked]
    n_relevant = n_rel_by_user.reindex(ranked, fill_value=0).to_numpy(dtype=np.int64)

    top = rec.recommend_many(
        [rec.users[int(u)] for u in ranked], k, min_count=min_count, popularity_penalty=popularity_penalty
    )
    counts = rec.item_counts.numpy()
    shown = top.item_idx[top.item_idx > 0]
    mean_popularity = float(counts[shown].mean()) if len(shown) else float("nan")
    lists = np.full((len(ranked), k), -1, dtype=np.int64)  # (n_ranked, k): short lists padded, never hits
    lists[:, : top.item_idx.shape[1]] = top.item_idx
    hits = hits_matrix(lists, relevant)
    counted = n_relevant > 0
    cand = (rec.item_counts >= int(min_count)).numpy()
    cand[0] = False
    n_cand = int(cand.sum())

    # expected precision of a random order: relevant candidates / candidates, per counted user
    train_x = rec.trained.train_x.cpu().numpy()
    pairs = np.unique(train_x[cand[train_x[:, 1]]], axis=0)
    seen_cand = np.bincount(pairs[:, 0], minlength=len(rec.users))[ranked]
    rel_cand = _relevant_candidates(relevant, ranked, pairs, cand)
    with np.errstate(divide="ignore", invalid="ignore"):
        random_prec = rel_cand / np.maximum(n_cand - seen_cand, 1)

    def mean(values: np.ndarray) -> float:
        return float(np.mean(values[counted])) if counted.any() else float("nan")

    metrics = {
        f"precision@{k}": mean(precision_at_k(hits)),
        f"recall@{k}": mean(recall_at_k(hits, n_relevant)),
        f"ndcg@{k}": mean(ndcg_at_k(hits, n_relevant)),
        f"map@{k}": mean(average_precision_at_k(hits, n_relevant)),
        f"hit_rate@{k}": mean(hit_rate_at_k(hits)),
        f"coverage@{k}": catalogue_coverage(top.item_idx, n_cand),
        f"mean_popularity@{k}": mean_popularity,  # training ratings of a recommended item, on average
    }
    result: dict[str, Any] = {
        "k": k,
        "relevant_threshold": float(relevant_threshold),
        "min_count": int(min_count),
        "metrics": metrics,
        f"random_precision@{k}": mean(random_prec),
        "users": {
            "counted": int(counted.sum()),
            "no_relevant": int((~counted).sum()),
            "cold": int(len(test_users) - len(ranked)) + int(len(np.unique(test[user_col][u_idx == 0]))),
        },
        "candidate_items": n_cand,
    }
    if baseline and rec.trained.name != "popular" and rec.trained.config is not None:
        popular = _most_rated(rec.trained)
        base = evaluate_ranking(
            popular, test, k, relevant_threshold, min_count=min_count, user_col=user_col,
            item_col=item_col, rating_col=rating_col, baseline=False,
        )  # fmt: skip
        result["baseline"] = {"model": "popular", "metrics": base["metrics"]}
        ndcg, base_ndcg = metrics[f"ndcg@{k}"], base["metrics"][f"ndcg@{k}"]
        result["beats_popular"] = bool(ndcg > base_ndcg) if math.isfinite(base_ndcg) else True
    if n_cand == 0:  # every list is empty: the zeros are what a user would be shown, not a bug
        most = int(counts[1:].max()) if len(counts) > 1 else 0
        result["note"] = (
            f"no item has {int(min_count)} training ratings (the most rated has {most}): every list is "
            f"empty, as recommend would serve it; give min_count {max(most, 1)} or lower to rank some"
        )
    return result


def _most_rated(trained: TrainedModel) -> TrainedModel:
    """The `popular` model of `trained`'s own training rows, with its vocabularies."""
    config = ModelConfig("popular", len(trained.users), len(trained.items))
    model = build_model(config)
    model.fit_direct(trained.train_x, trained.train_y)
    return dataclasses.replace(trained, model=model, config=config, history=[], results={})


def _relevant_candidates(
    relevant: list[np.ndarray], ranked: np.ndarray, seen_pairs: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Per ranked user: relevant items that are candidates and were not rated in training."""
    lengths = np.array([len(r) for r in relevant], dtype=np.int64)
    rows = np.repeat(np.arange(len(ranked)), lengths)
    items = np.concatenate(relevant).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    width = len(cand) + 1
    keys = ranked[rows].astype(np.int64) * width + items
    keep = cand[items] & ~np.isin(keys, seen_pairs[:, 0] * width + seen_pairs[:, 1])
    return np.bincount(rows[keep], minlength=len(ranked))


__all__ = [
    "average_precision_at_k",
    "catalogue_coverage",
    "evaluate_ranking",
    "hit_rate_at_k",
    "hits_matrix",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]
