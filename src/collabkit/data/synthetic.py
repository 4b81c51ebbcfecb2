"""MovieLens-shaped synthetic ratings at any size, so scale is tested without downloads.

Shape, as in the real releases: item popularity and user activity are long-tailed (a few items
and users account for most ratings), ratings are 1..5 stars from hidden user and item factors plus
biases plus noise, and timestamps spread over years. Each (user, item) pair appears once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from collabkit.errors import CollabkitError


@dataclass(frozen=True)
class Shape:
    n_users: int
    n_items: int
    n_ratings: int


SHAPES = {
    "ml-100k": Shape(943, 1682, 100_000),
    "ml-1m": Shape(6040, 3706, 1_000_209),
    "ml-20m": Shape(138_493, 26_744, 20_000_263),
    "ml-25m": Shape(162_541, 59_047, 25_000_095),
}


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity weights ~ 1/rank^exponent, assigned to ids in random order."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return rng.permutation(w / w.sum())


def _draw(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int32)


def _distinct_pairs(
    user_w: np.ndarray, item_w: np.ndarray, n: int, rng: np.random.Generator, chunk: int
) -> np.ndarray:
    """`n` distinct (user, item) pairs as keys user * n_items + item, in random order.

    Pairs are drawn by activity and popularity, repeats dropped, and more drawn until `n` remain.
    """
    n_items = len(item_w)
    if n > len(user_w) * n_items // 2:
        raise CollabkitError(f"{n} ratings is too dense for {len(user_w)} users and {n_items} items")
    keys = np.empty(0, np.int64)
    while len(keys) < n:
        want = int((n - len(keys)) * 1.3) + 1000
        parts = [keys]
        for start in range(0, want, chunk):
            size = min(chunk, want - start)
            u = _draw(user_w, size, rng).astype(np.int64)
            parts.append(u * n_items + _draw(item_w, size, rng))
        keys = np.unique(np.concatenate(parts))
    return rng.permutation(keys)[:n]


def synthetic_ratings(
    n_ratings: int,
    n_users: int | None = None,
    n_items: int | None = None,
    *,
    k: int = 8,
    noise: float = 0.7,
    seed: int = 0,
    chunk: int = 5_000_000,
) -> pd.DataFrame:
    """A ratings table (user, item, rating, timestamp) shaped like MovieLens.

    Users and items default to ML-25M's ratio to ratings. Ids start at 1. Memory is about 20 bytes
    per rating; it is generated in chunks, so 100M ratings fit in a few GB.
    """
    if n_ratings < 1:
        raise CollabkitError(f"n_ratings must be positive, got {n_ratings}")
    base = SHAPES["ml-25m"]
    scale = n_ratings / base.n_ratings
    n_users = n_users or max(10, round(base.n_users * scale**0.75))
    n_items = n_items or max(10, round(base.n_items * scale**0.6))
    rng = np.random.default_rng(seed)
    # user activity: log-normal (median about half the mean, a long right tail), as in MovieLens
    user_w = rng.lognormal(mean=0.0, sigma=1.1, size=n_users)
    user_w /= user_w.sum()
    item_w = _zipf_weights(n_items, 0.9, rng)
    uf = rng.normal(scale=1 / np.sqrt(k), size=(n_users, k)).astype(np.float32)
    itf = rng.normal(scale=1 / np.sqrt(k), size=(n_items, k)).astype(np.float32)
    ub = rng.normal(scale=0.35, size=n_users).astype(np.float32)
    popularity = np.log(item_w * n_items)  # popular items are rated a little higher, as in MovieLens
    ib = (rng.normal(scale=0.45, size=n_items) + 0.12 * (popularity - popularity.mean())).astype(np.float32)
    keys = _distinct_pairs(user_w, item_w, n_ratings, rng, chunk)
    users = (keys // n_items).astype(np.int32)
    items = (keys % n_items).astype(np.int32)
    del keys
    ratings = np.empty(n_ratings, np.float32)
    for start in range(0, n_ratings, chunk):
        stop = min(start + chunk, n_ratings)
        u, i = users[start:stop], items[start:stop]
        score = 3.45 + ub[u] + ib[i] + np.einsum("nk,nk->n", uf[u], itf[i]) * 1.2
        score += rng.normal(scale=noise, size=stop - start).astype(np.float32)
        ratings[start:stop] = np.clip(np.rint(score), 1, 5)
    users += 1
    items += 1
    timestamps = rng.integers(789_652_009, 1_700_000_000, size=n_ratings, dtype=np.int64)
    table = pd.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": timestamps})
    table.attrs["source"] = f"synthetic (seed {seed}, {n_users} users, {n_items} items)"
    return table


def synthetic_like(name: str, seed: int = 0, fraction: float = 1.0) -> pd.DataFrame:
    """Synthetic ratings with the shape of a MovieLens release (`ml-25m`, ...), optionally scaled."""
    if name not in SHAPES:
        raise CollabkitError(f"unknown shape {name!r}; expected one of: {', '.join(SHAPES)}")
    s = SHAPES[name]
    return synthetic_ratings(
        max(1, round(s.n_ratings * fraction)),
        max(10, round(s.n_users * fraction**0.75)) if fraction != 1 else s.n_users,
        max(10, round(s.n_items * fraction**0.6)) if fraction != 1 else s.n_items,
        seed=seed,
    )
