"""Training: the chapter's own model classes through Learner, every built-in model, weight decay groups."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from collabkit import (
    CollabDataLoaders,
    CollabkitError,
    Embedding,
    Learner,
    Module,
    MSELossFlat,
    collab_learner,
    evaluate_model,
    set_seed,
    sigmoid_range,
)
from collabkit.train.optim import make_adam, no_decay_params
from tests.conftest import epoch_families, small_settings

# --- the chapter's models, as written in fastbook chapter 8 (only imports changed) ---------------


class DotProductBias(Module):
    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.user_bias = Embedding(n_users, 1)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.movie_bias = Embedding(n_movies, 1)
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        res = (users * movies).sum(dim=1, keepdim=True)
        res += self.user_bias(x[:, 0]) + self.movie_bias(x[:, 1])
        return sigmoid_range(res, *self.y_range)


def create_params(size):
    return nn.Parameter(torch.zeros(*size).normal_(0, 0.01))


class DotProductBiasParams(Module):
    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = create_params([n_users, n_factors])
        self.user_bias = create_params([n_users])
        self.movie_factors = create_params([n_movies, n_factors])
        self.movie_bias = create_params([n_movies])
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors[x[:, 0]]
        movies = self.movie_factors[x[:, 1]]
        res = (users * movies).sum(dim=1)
        res += self.user_bias[x[:, 0]] + self.movie_bias[x[:, 1]]
        return sigmoid_range(res, *self.y_range)


class CollabNN(Module):
    def __init__(self, user_sz, item_sz, y_range=(0, 5.5), n_act=100):
        self.user_factors = Embedding(*user_sz)
        self.item_factors = Embedding(*item_sz)
        self.layers = nn.Sequential(nn.Linear(user_sz[1] + item_sz[1], n_act), nn.ReLU(), nn.Linear(n_act, 1))
        self.y_range = y_range

    def forward(self, x):
        embs = self.user_factors(x[:, 0]), self.item_factors(x[:, 1])
        x = self.layers(torch.cat(embs, dim=1))
        return sigmoid_range(x, *self.y_range)


@pytest.fixture
def dls(ratings: pd.DataFrame) -> CollabDataLoaders:
    return CollabDataLoaders.from_df(ratings, bs=64, seed=42)


def _baseline_mse(dls: CollabDataLoaders) -> float:
    """MSE of always predicting the training mean: what a model must beat to have learned anything."""
    return float(((dls.valid.y - dls.train.y.mean()) ** 2).mean())


@pytest.mark.parametrize("cls", [DotProductBias, DotProductBiasParams])
def test_chapter_models_train_through_learner(dls: CollabDataLoaders, cls: type) -> None:
    set_seed(0)
    model = cls(dls.n_users, dls.n_items, 20)
    learn = Learner(dls, model, loss_func=MSELossFlat(), log=None)
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
    assert len(learn.history) == 5
    assert learn.history[-1]["valid_loss"] < 0.8 * _baseline_mse(dls)


def test_chapter_collabnn_trains(dls: CollabDataLoaders) -> None:
    from collabkit import get_emb_sz

    set_seed(0)
    learn = Learner(dls, CollabNN(*get_emb_sz(dls)), loss_func=MSELossFlat(), log=None)
    learn.fit_one_cycle(5, 5e-3, wd=0.01)
    assert learn.history[-1]["valid_loss"] < _baseline_mse(dls)


@pytest.mark.parametrize("name", epoch_families())
def test_every_builtin_model_learns(dls: CollabDataLoaders, name: str) -> None:
    set_seed(0)
    sizes: dict[str, object] = small_settings(name, width=20) if name.startswith("dot") else {}
    learn = collab_learner(dls, model=name, log=None, **sizes)
    learn.fit_one_cycle(6, 1e-2, wd=0.05)
    res = evaluate_model(learn.model, dls.valid.x, dls.valid.y)
    assert res["mse"] < 0.9 * _baseline_mse(dls), res
    if name == "classifier":
        assert 0.3 < res["accuracy"] <= 1
        preds, _ = learn.get_preds()
        assert preds.shape == (dls.valid.n, 5) and torch.allclose(preds.sum(1), torch.ones(dls.valid.n))


def test_epoch_table_rows_are_logged(dls: CollabDataLoaders) -> None:
    lines: list[str] = []
    learn = collab_learner(dls, n_factors=5, y_range=(0, 5.5), log=lines.append)
    learn.fit_one_cycle(2, 5e-3)
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "rmse", "time"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"]
    assert set(learn.history[0]) == {"epoch", "train_loss", "valid_loss", "rmse", "time"}


def test_seeded_runs_repeat(ratings: pd.DataFrame) -> None:
    def run() -> float:
        set_seed(3)
        d = CollabDataLoaders.from_df(ratings, bs=64, seed=3)
        learn = collab_learner(d, n_factors=8, y_range=(0, 5.5), log=None)
        learn.fit_one_cycle(2, 5e-3)
        return learn.history[-1]["valid_loss"]

    assert run() == run()


def test_get_preds_and_predict_agree(dls: CollabDataLoaders) -> None:
    learn = collab_learner(dls, n_factors=5, y_range=(0, 5.5), log=None)
    learn.fit_one_cycle(1, 5e-3)
    preds, targs = learn.get_preds()
    assert preds.shape == targs.shape == (dls.valid.n,)
    rows = dls.table.iloc[dls.valid_rows[:5]]
    assert torch.allclose(torch.from_numpy(learn.predict(rows)), preds[:5], atol=1e-6)


def test_weight_decay_groups_follow_fastai() -> None:
    from collabkit import EmbeddingDotBias, EmbeddingNN

    dot = EmbeddingDotBias(4, 3, 3)
    assert no_decay_params(dot) == set()  # fastai decays the bias embeddings too
    net = EmbeddingNN([(3, 2), (3, 2)], layers=[4])
    skip = no_decay_params(net)
    names = {n for n, p in net.named_parameters() if id(p) in skip}
    assert names == {"layers.2.weight", "layers.2.bias", "head.bias"}
    opt = make_adam(net, lr=1e-3, wd=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_decoupled_weight_decay_step() -> None:
    # with zero gradient, one AdamW step multiplies weights by (1 - lr * wd), as fastai's Adam does
    p = nn.Parameter(torch.ones(3))
    model = nn.Module()
    model.register_parameter("w", p)
    opt = make_adam(model, lr=0.1, wd=0.5)
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 0.95))


def test_diverging_training_stops_with_a_clear_error(dls: CollabDataLoaders) -> None:
    learn = collab_learner(dls, n_factors=5, y_range=None, log=None)
    with pytest.raises(CollabkitError, match="diverged"):
        learn.fit(1, lr=1e12)
