"""GroupLens's ml-latest-small from ../shared (CSV with a header, half-star ratings) through the table path.

The same features (named columns, half stars, the command on a CSV) are covered on data made in
tests/test_tables.py and tests/test_cli.py; this file adds the real release where it is present.
"""

from __future__ import annotations

import pytest

from collabkit import CollabDataLoaders, collab_learner, read_ratings, set_seed
from tests.conftest import SHARED_ML_LATEST_SMALL

RATINGS = SHARED_ML_LATEST_SMALL / "ratings.csv"
pytestmark = pytest.mark.skipif(
    not RATINGS.exists(), reason=f"{RATINGS} is not here (only beside a checkout that has ../shared)"
)


def test_reads_and_trains() -> None:
    table = read_ratings(RATINGS, user="userId", item="movieId", rating="rating", timestamp="timestamp")
    assert len(table) > 100_000 and set(table["rating"].unique()) >= {0.5, 4.5, 5.0}
    dls = CollabDataLoaders.from_df(table, bs=1024, seed=42)
    set_seed(0)
    learn = collab_learner(dls, n_factors=20, y_range=(0, 5.5), log=None)
    learn.fit_one_cycle(3, 5e-3, wd=0.1)
    assert learn.history[-1]["valid_loss"] < float(((dls.valid.y - dls.train.y.mean()) ** 2).mean())


def test_half_star_levels_for_the_classifier() -> None:
    table = read_ratings(RATINGS, user="userId", item="movieId", rating="rating")
    dls = CollabDataLoaders.from_df(table, bs=1024, seed=42)
    assert dls.rating_levels() == [x / 2 for x in range(1, 11)]
