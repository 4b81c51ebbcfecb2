"""Shared fixtures: small rating tables made here with known structure, and the real ML-100k when asked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SHARED_ML_LATEST_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def make_ratings(
    n_users: int = 60, n_items: int = 40, n: int = 2000, seed: int = 0, k: int = 3
) -> pd.DataFrame:
    """Ratings 1..5 from hidden user/item factors plus biases: a table a model can learn."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=min(n, n_users * n_items), replace=False)
    users, items = pairs // n_items, pairs % n_items
    uf, itf = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k))
    ib = rng.normal(scale=0.7, size=n_items)
    score = 3 + (uf[users] * itf[items]).sum(1) * 0.6 + ib[items] + rng.normal(scale=0.2, size=len(users))
    return pd.DataFrame(
        {
            "user": users + 1,
            "item": items + 100,
            "rating": np.clip(np.round(score), 1, 5).astype("float32"),
            "timestamp": rng.integers(800_000_000, 900_000_000, size=len(users)),
        }
    )


@pytest.fixture
def ratings() -> pd.DataFrame:
    return make_ratings()


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The real ML-100k (GroupLens, or the offline copy from PyPI), loaded once per session."""
    from collabkit.data.datasets import load_movielens

    home = os.environ.get("COLLABKIT_HOME") or str(tmp_path_factory.mktemp("collabkit-home"))
    return load_movielens("ml-100k", cache_dir=home, progress=False)


@pytest.fixture
def ratings_csv(tmp_path: Path, ratings: pd.DataFrame) -> Path:
    """`ratings` written as a CSV file, for the command's tests."""
    path = tmp_path / "ratings.csv"
    ratings.to_csv(path, index=False)
    return path


def planted_mf(n_users: int = 60, n_items: int = 40, k: int = 2, density: float = 0.5, noise: float = 0.1,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Every cell of a rank-k matrix with biases (3 + b_u + b_i + u.v + noise); (all pairs, ratings, seen)."""
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(n_users, k, generator=g), torch.randn(n_items, k, generator=g)
    bu, bi = torch.randn(n_users, generator=g) * 0.5, torch.randn(n_items, generator=g) * 0.5
    pairs = torch.cartesian_prod(torch.arange(n_users), torch.arange(n_items))
    truth = 3 + bu[pairs[:, 0]] + bi[pairs[:, 1]] + (u[pairs[:, 0]] * v[pairs[:, 1]]).sum(1)
    ratings = truth + noise * torch.randn(len(pairs), generator=g)
    seen = torch.rand(len(pairs), generator=g) < density
    return pairs, ratings, seen


def epoch_families() -> list[str]:
    """The built-in families trained by the Learner's one-cycle epochs (dot, dotbias, nn, classifier,
    hybrid, ...): a family added later joins every test parametrised over them."""
    from collabkit.defaults import BUILT_IN_FAMILIES
    from collabkit.models import family

    return [name for name in BUILT_IN_FAMILIES if family(name).recipes]


def small_settings(name: str, width: int = 4, y_range: tuple[float, float] | None = (0, 5.5)) -> dict:
    """Settings that make a small model of an epoch-trained family: its width, and its output
    range where it takes one (a classifier predicts rating levels instead)."""
    from collabkit.models import family

    fields = family(name).Settings.model_fields
    out: dict = {"n_factors": width} if "n_factors" in fields else {"layers": [4 * width]}
    if "y_range" in fields and y_range is not None:
        out["y_range"] = y_range
    return out
