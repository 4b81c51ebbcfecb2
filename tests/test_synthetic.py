"""Synthetic MovieLens-shaped data: sizes, ranges, long tails, distinct pairs, learnable structure."""

from __future__ import annotations

import numpy as np
import pytest

from collabkit import CollabDataLoaders, CollabkitError, collab_learner, set_seed
from collabkit.data.synthetic import synthetic_like, synthetic_ratings


def test_shape_and_ranges() -> None:
    t = synthetic_ratings(50_000, 2000, 1000, seed=1)
    assert len(t) == 50_000 and list(t.columns) == ["user", "item", "rating", "timestamp"]
    assert t["user"].between(1, 2000).all() and t["item"].between(1, 1000).all()
    assert set(np.unique(t["rating"])) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert not t.duplicated(["user", "item"]).any()
    counts = t["item"].value_counts()
    assert counts.iloc[:10].sum() > 10 * counts.median() * 10  # a long head of popular items
    assert 3.0 < t["rating"].mean() < 4.2


def test_seeded_and_scaled() -> None:
    assert synthetic_ratings(1000, 100, 50, seed=3).equals(synthetic_ratings(1000, 100, 50, seed=3))
    small = synthetic_like("ml-100k")
    assert len(small) == 100_000 and small["user"].max() <= 943 and small["item"].max() <= 1682
    with pytest.raises(CollabkitError, match="unknown shape"):
        synthetic_like("ml-7m")
    with pytest.raises(CollabkitError, match="too dense"):
        synthetic_ratings(10_000, 10, 10)


def test_a_model_learns_it() -> None:
    t = synthetic_ratings(40_000, 800, 400, seed=2)
    dls = CollabDataLoaders.from_df(t, bs=512, seed=0)
    set_seed(0)
    learn = collab_learner(dls, n_factors=8, y_range=(0.5, 5.5), log=None)
    learn.fit_one_cycle(5, 1e-2, wd=0.05)
    baseline = float(((dls.valid.y - dls.train.y.mean()) ** 2).mean())
    assert learn.history[-1]["valid_loss"] < 0.85 * baseline
