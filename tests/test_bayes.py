"""Bayesian MF (`bayesmf`): each block of the Gibbs sweep draws from the right conditional, the
answer is the average of the kept draws, and it recovers planted structure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import collabkit.models.bayes as bayes
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model
from collabkit.models.bayes import BayesianMF, GibbsSampler, Group, Rows
from tests.conftest import planted_mf as planted


def fitted(x: torch.Tensor, y: torch.Tensor, n_users: int, n_items: int, **settings: object) -> BayesianMF:
    torch.manual_seed(0)
    model = build_model(ModelConfig("bayesmf", n_users, n_items, **settings))
    assert isinstance(model, BayesianMF)
    model.fit_direct(x, y)
    return model


def test_it_recovers_a_planted_low_rank_matrix_with_biases() -> None:
    pairs, ratings, seen = planted()
    model = fitted(pairs[seen], ratings[seen], 60, 40, n_factors=4, samples=120, burn_in=40)
    held = ~seen
    rmse = float((model(pairs[held]) - ratings[held]).square().mean().sqrt())
    spread = float(ratings[held].std())
    assert rmse < 0.25 * spread  # near the noise (0.1), far below predicting the mean


def test_the_answer_is_the_average_of_the_kept_draws_and_rows_times_side_scores_it() -> None:
    pairs, ratings, seen = planted(n_users=20, n_items=15)
    model = fitted(pairs[seen], ratings[seen], 20, 15, n_factors=3, samples=30, burn_in=10, keep=5)
    assert model.user_factors.shape == (20, 5, 3)
    per_draw = (model.user_factors[pairs[:, 0]] * model.item_factors[pairs[:, 1]]).sum(2)  # (N, 5)
    expected = model.offset + model.user_bias[pairs[:, 0]] + model.item_bias[pairs[:, 1]] + per_draw.mean(1)
    lo, hi = float(ratings[seen].min()), float(ratings[seen].max())
    assert torch.allclose(model(pairs), expected.clamp(lo, hi), atol=1e-5)
    block = model.user_rows(torch.arange(20)) @ model.item_side(torch.arange(15))  # (20, 15)
    assert torch.allclose(block.flatten(), expected, atol=1e-4)
    parts = model.explain(3, 4)  # additive parts sum to the raw score
    assert parts.raw == pytest.approx(float(expected[3 * 15 + 4]), abs=1e-4)


def small_rows(seed: int = 1) -> Rows:
    g = torch.Generator().manual_seed(seed)
    pairs = torch.cartesian_prod(torch.arange(6), torch.arange(5))
    keep = torch.rand(len(pairs), generator=g) < 0.6
    pairs = pairs[keep]
    return Rows(pairs[:, 0], pairs[:, 1], torch.randn(len(pairs), generator=g, dtype=torch.float64) + 3, 6, 5)


def test_a_factor_block_draw_centres_on_the_ridge_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the noise of the draw set to 0, every user's p is the exact ridge solve of its conditional."""
    rows = small_rows()
    sampler = GibbsSampler(rows, 2, "none")
    _, v = sampler.sides()
    target = torch.randn(len(rows.r), dtype=torch.float64)
    monkeypatch.setattr(bayes.torch, "randn_like", torch.zeros_like)
    sampler._draw_rows(sampler.p, "user", rows.grams("user", v), target, v)
    lam, mean = sampler.p.precision, sampler.p.mean
    for user in range(6):
        mine = rows.u == user
        design = v[rows.i[mine]]
        a = sampler.alpha * design.T @ design + torch.diag(lam)
        b = sampler.alpha * design.T @ target[mine] + lam * mean
        assert torch.allclose(sampler.p.values[user], torch.linalg.solve(a, b), atol=1e-8)


def test_the_implicit_draw_solves_its_normal_equations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Perturb-and-solve with the noise at 0 and enough CG steps is the conditional's mean: the dense
    solve of (alpha A^T C A + Lambda) Y = alpha A^T sum(target x V) + Lambda mean."""
    rows = small_rows(2)
    sampler = GibbsSampler(rows, 2, "user")
    assert sampler.y is not None
    _, v = sampler.sides()
    target = torch.randn(len(rows.r), dtype=torch.float64)
    sampler.y.mean = torch.tensor([0.3, -0.2], dtype=torch.float64)
    monkeypatch.setattr(bayes.torch, "randn_like", torch.zeros_like)
    monkeypatch.setattr(bayes, "CG_STEPS", 30)
    gram = rows.grams("user", v)
    sampler._draw_implicit(sampler.y, rows.a, rows.a_t, rows.a_t_sq, gram, target, v, "user")
    # dense reference: prediction of row n is sum_j A[u_n, j] y_j . v_{i_n}, linear in vec(Y)
    a = rows.a.to_dense()
    k, n_items = 2, 5
    design = torch.zeros(len(rows.r), n_items * k, dtype=torch.float64)
    for n in range(len(rows.r)):
        design[n] = (a[rows.u[n]][:, None] * v[rows.i[n]][None, :]).flatten()
    lam = sampler.y.precision.repeat(n_items)
    h = sampler.alpha * design.T @ design + torch.diag(lam)
    b = sampler.alpha * design.T @ target + lam * sampler.y.mean.repeat(n_items)
    assert torch.allclose(sampler.y.values.flatten(), torch.linalg.solve(h, b), atol=1e-6)


def test_the_hyperprior_draw_follows_the_rows() -> None:
    torch.manual_seed(0)
    group = Group(torch.randn(20000, 2, dtype=torch.float64) * torch.tensor([0.5, 2.0]) + 1.0)
    for _ in range(5):  # from a mean of 0: the first precision draw sees the rows' offset as spread
        group.draw_prior()
    assert torch.allclose(group.precision, torch.tensor([4.0, 0.25], dtype=torch.float64), rtol=0.05)
    assert torch.allclose(group.mean, torch.ones(2, dtype=torch.float64), atol=0.05)


def test_implicit_feedback_helps_where_which_items_were_rated_carries_the_signal() -> None:
    """Users rate what they like: the set of rated items tells the taste that a few ratings do not."""
    g = torch.Generator().manual_seed(3)
    n_users, n_items = 150, 60
    taste = torch.randn(n_users, 2, generator=g)
    kind = torch.randn(n_items, 2, generator=g)
    affinity = taste @ kind.T  # (users, items)
    pairs = torch.cartesian_prod(torch.arange(n_users), torch.arange(n_items))
    score = affinity.flatten()
    rated = torch.rand(len(pairs), generator=g) < torch.sigmoid(2 * score - 1.5)  # liked ones get rated
    ratings = 3 + score + 0.3 * torch.randn(len(pairs), generator=g)
    idx = torch.nonzero(rated)[:, 0]
    test = idx[torch.rand(len(idx), generator=g) < 0.2]
    train = idx[~torch.isin(idx, test)]
    errors = {}
    for implicit in ("none", "both"):
        model = fitted(pairs[train], ratings[train], n_users, n_items, n_factors=2, samples=80, burn_in=30,
                       implicit=implicit)  # fmt: skip
        errors[implicit] = float((model(pairs[test]) - ratings[test]).square().mean().sqrt())
    assert errors["both"] < errors["none"]


def test_a_repeated_pair_keeps_its_last_rating() -> None:
    x = torch.tensor([[0, 0], [1, 1], [0, 0], [1, 0], [0, 1]])
    y = torch.tensor([1.0, 4.0, 5.0, 3.0, 2.0])
    model = fitted(x, y, 2, 2, n_factors=1, samples=4, burn_in=1)
    assert float(model.bounds[0]) == 2.0 and float(model.bounds[1]) == 5.0  # the first (0, 0) is gone
    assert float(model.offset) == pytest.approx((4 + 5 + 3 + 2) / 4)


def test_fold_in_of_a_trained_users_ratings_gives_back_their_predictions() -> None:
    pairs, ratings, seen = planted(noise=0.05)
    model = fitted(pairs[seen], ratings[seen], 60, 40, n_factors=3, samples=80, burn_in=30, keep=10)
    user = 7
    mine = seen & (pairs[:, 0] == user)
    prior = model.user_rows(torch.arange(60)).mean(0)
    row = model.fold_in(pairs[mine][:, 1], ratings[mine], prior, strength=0.1)
    folded = model.raw_to_rating(row[None, :] @ model.item_side(torch.arange(40)))[0]
    trained = model(torch.stack([torch.full((40,), user), torch.arange(40)], 1))
    assert torch.corrcoef(torch.stack([folded, trained]))[0, 1] > 0.9
    with pytest.raises(CollabkitError, match="strength"):
        model.fold_in(pairs[mine][:2, 1], ratings[mine][:2], prior, strength=0.0)


def test_bad_settings_and_input_are_one_line_errors() -> None:
    with pytest.raises(CollabkitError, match=r"burn_in \(50\) must be below samples \(50\)"):
        ModelConfig("bayesmf", 3, 3, samples=50, burn_in=50)
    with pytest.raises(CollabkitError, match="implicit"):
        ModelConfig("bayesmf", 3, 3, implicit="sometimes")
    model = build_model(ModelConfig("bayesmf", 2, 2, samples=3, burn_in=1))
    with pytest.raises(CollabkitError, match="NaN or infinite"):
        model.fit_direct(torch.tensor([[0, 0], [1, 1]]), torch.tensor([1.0, math.nan]))
    with pytest.raises(CollabkitError, match="outside the model's 2 users"):
        model.fit_direct(torch.tensor([[0, 0], [2, 1]]), torch.tensor([1.0, 2.0]))
    with pytest.raises(CollabkitError, match="no training ratings"):
        model.fit_direct(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0))


# -- the rating's day ---------------------------------------------------------------------------


def planted_days(n: int = 3000, n_days: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Ratings whose mean moves with the day: 3 + b_d + (u + t_d) . v + noise; x (n, 3), day 1000 + d."""
    g = torch.Generator().manual_seed(0)
    u, v, t = (
        torch.randn(80, 2, generator=g),
        torch.randn(60, 2, generator=g),
        torch.randn(n_days, 2, generator=g),
    )
    bd = torch.randn(n_days, generator=g)
    users, items = torch.randint(0, 80, (n,), generator=g), torch.randint(0, 60, (n,), generator=g)
    days = torch.randint(0, n_days, (n,), generator=g)
    y = 3 + bd[days] + ((u[users] + t[days]) * v[items]).sum(1) + 0.1 * torch.randn(n, generator=g)
    return torch.stack([users, items, days + 1000], 1), y


def test_day_effects_are_learned_and_an_unknown_day_adds_nothing() -> None:
    x, y = planted_days()
    common = {"n_factors": 4, "samples": 120, "burn_in": 40, "implicit": "none"}
    with_days = fitted(x[:2400], y[:2400], 80, 60, days=True, first_day=1000, n_days=20, **common)
    without = fitted(x[:2400], y[:2400], 80, 60, days=False, **common)
    assert with_days.takes_days and not without.takes_days

    def rmse(model: BayesianMF, pairs: torch.Tensor) -> float:
        return float((model(pairs) - y[2400:]).square().mean().sqrt())

    assert rmse(with_days, x[2400:]) < 0.25 < rmse(without, x[2400:])  # near the noise (0.1) with days
    test = x[2400:]
    unknown = test.clone()
    unknown[:, 2] = 990  # before the first training day
    assert torch.allclose(with_days(unknown), with_days(test[:, :2]))  # no day: no day effect
    assert not torch.allclose(with_days(test), with_days(test[:, :2]))


def test_the_day_vocabulary_comes_from_the_training_rows_and_scores_the_held_out_ones(tmp_path: Path) -> None:
    from collabkit.data.splits import make_split
    from collabkit.persist import load_model
    from collabkit.workflows import TrainConfig, pairs_of, score_rows, train
    from tests.conftest import make_ratings

    table = make_ratings(n=800, seed=4)
    table["timestamp"] = 86_400 * (10_000 + np.arange(len(table)) % 30)  # 30 days, in row order
    res = train(table, TrainConfig(model="bayesmf", settings={"samples": 30, "burn_in": 10}), log=None,
                out=tmp_path / "m")  # fmt: skip
    train_rows, valid_rows = make_split(table, res.split)
    days = table["timestamp"].to_numpy() // 86_400
    assert res.settings["first_day"] == days[train_rows].min()
    assert res.settings["n_days"] == days[train_rows].max() - days[train_rows].min() + 1
    trained = load_model(tmp_path / "m")
    held = table.iloc[valid_rows]
    x = pairs_of(trained, held)
    assert x.shape[1] == 3 and torch.equal(x[:, 2], torch.from_numpy(days[valid_rows]))
    assert score_rows(trained, held)["rmse"] == pytest.approx(res.valid["rmse"])
    undated = score_rows(trained, held.drop(columns="timestamp"))["rmse"]  # scored at no particular day
    assert undated != pytest.approx(res.valid["rmse"])
    quick = TrainConfig(model="bayesmf", settings={"samples": 20, "burn_in": 5})
    no_time = train(table.drop(columns="timestamp"), quick, log=None)
    assert no_time.settings["n_days"] == 0


def test_timestamps_that_are_not_seconds_are_refused_in_one_line() -> None:
    from collabkit.workflows import TrainConfig, train
    from tests.conftest import make_ratings

    table = make_ratings(n=300)
    table["timestamp"] = table["timestamp"] * 1000  # milliseconds
    with pytest.raises(CollabkitError, match="days=false"):
        train(table, TrainConfig(model="bayesmf"), log=None)


def test_a_prediction_takes_its_day_by_library_command_and_service(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from collabkit.cli import app
    from collabkit.recommend import Recommender
    from collabkit.service import create_app
    from collabkit.workflows import TrainConfig, train
    from tests.conftest import make_ratings

    table = make_ratings(n=800, seed=4)
    table["timestamp"] = 86_400 * (10_000 + np.arange(len(table)) % 30) + 3_600
    train(
        table,
        TrainConfig(model="bayesmf", settings={"samples": 30, "burn_in": 10}),
        log=None,
        out=tmp_path / "m",
    )
    rec = Recommender.load(tmp_path / "m")
    user, item = table["user"].iloc[0], table["item"].iloc[0]
    undated = float(rec.predict([user], [item])[0])
    seconds = str(86_400 * 10_003 + 5)
    dated = float(rec.predict([user], [item], when=[seconds])[0])
    assert dated != pytest.approx(undated)
    assert float(rec.predict([user], [item], when=["1997-05-22"])[0]) == pytest.approx(dated)  # day 10003
    out = CliRunner().invoke(app, ["predict", str(tmp_path / "m"), "--user", str(user), "--item", str(item),
                                   "--when", seconds, "--json"])  # fmt: skip
    assert out.exit_code == 0 and abs(json_rating(out.output) - dated) < 1e-5
    with TestClient(create_app(rec)) as client:
        got = client.get("/predict", params={"user": str(user), "item": str(item), "when": "1997-05-22"})
        assert got.status_code == 200 and got.json()["rating"] == pytest.approx(dated, abs=1e-5)
        bad = client.get("/predict", params={"user": str(user), "item": str(item), "when": "someday"})
        assert bad.status_code == 422 and "date" in bad.text
    train(table, TrainConfig(model="dotbias"), log=None, out=tmp_path / "d")
    args = ["predict", str(tmp_path / "d"), "--user", str(user), "--item", str(item), "--when", seconds]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "no day effects" in refused.output


def json_rating(text: str) -> float:
    import json

    return float(json.loads(text)["predictions"][0]["rating"])


# -- bias drift (Koren 2009) ------------------------------------------------------------------------


def planted_drift(n: int = 4000, n_days: int = 300, bins: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Ratings 3 + b_u + b_i + b_{i,Bin(t)} + alpha_u dev_u(t) + u . v + noise 0.1, every user rating
    across all days; x (n, 3) with day 1000 + d. The bin biases of an item sum to 0 over the bins."""
    g = torch.Generator().manual_seed(5)
    n_users, n_items = 60, 40
    u, v = torch.randn(n_users, 2, generator=g), torch.randn(n_items, 2, generator=g)
    bu, bi = 0.5 * torch.randn(n_users, generator=g), 0.5 * torch.randn(n_items, generator=g)
    bin_bias = torch.randn(n_items, bins, generator=g)
    bin_bias -= bin_bias.mean(1, keepdim=True)
    slope = 0.2 * torch.randn(n_users, generator=g)
    users, items = torch.randint(0, n_users, (n,), generator=g), torch.randint(0, n_items, (n,), generator=g)
    days = torch.randint(0, n_days, (n,), generator=g)
    mean_day = torch.zeros(n_users).index_add_(0, users, days.float()) / torch.bincount(users).float()
    gap = days - mean_day[users]
    dev = gap.sign() * gap.abs() ** 0.4
    truth = 3 + bu[users] + bi[items] + bin_bias[items, days * bins // n_days] + slope[users] * dev
    y = truth + (u[users] * v[items]).sum(1) + 0.1 * torch.randn(n, generator=g)
    return torch.stack([users, items, days + 1000], 1), y


DRIFT_RUN = {"n_factors": 2, "samples": 80, "burn_in": 30, "implicit": "none", "days": False,
             "first_day": 1000, "n_days": 300, "time_bins": 10}  # fmt: skip


def test_planted_bias_drift_is_learned() -> None:
    x, y = planted_drift()
    with_drift = fitted(x[:3200], y[:3200], 60, 40, drift=True, **DRIFT_RUN)
    without = fitted(x[:3200], y[:3200], 60, 40, drift=False, **DRIFT_RUN)
    assert with_drift.takes_days and not without.takes_days

    def rmse(model: BayesianMF) -> float:
        return float((model(x[3200:]) - y[3200:]).square().mean().sqrt())

    assert rmse(with_drift) < 0.5 * rmse(without)
    assert rmse(with_drift) < 0.35  # the noise is 0.1; 1 bin bias per item and bin learned from ~8 ratings


def test_no_day_or_a_day_outside_the_training_span_adds_no_drift() -> None:
    x, y = planted_drift(n=1500)
    model = fitted(x, y, 60, 40, drift=True, **{**DRIFT_RUN, "samples": 20, "burn_in": 5})
    assert float(model.item_bin_bias.abs().max()) > 0.1 and float(model.user_drift.abs().max()) > 0.01
    pairs = x[:50]
    plain = model.offset + model.user_bias[pairs[:, 0]] + model.item_bias[pairs[:, 1]]
    plain = model.raw_to_rating(
        plain + (model.user_factors[pairs[:, 0]] * model.item_factors[pairs[:, 1]]).mean(1).sum(1)
    )
    assert torch.allclose(model(pairs[:, :2]), plain, atol=1e-5)  # no day: no drift
    for day in (999, 1300, 5000):  # before the first training day, just after the last, far after
        outside = pairs.clone()
        outside[:, 2] = day
        assert torch.allclose(model(outside), plain, atol=1e-5)
    assert not torch.allclose(model(pairs), plain, atol=1e-3)
    # inside the span: the user's drift at that day and the item's bin bias, added to the plain score
    day = pairs[:, 2] - 1000
    gap = day.double() - model.user_day[pairs[:, 0]].double()
    drift = model.user_drift[pairs[:, 0]] * (gap.sign() * gap.abs() ** 0.4).float()
    expected = plain + model.item_bin_bias[pairs[:, 1], day * 10 // 300] + drift
    assert torch.allclose(model(pairs), model.raw_to_rating(expected), atol=1e-4)


def test_drift_comes_only_from_the_training_rows_days(tmp_path: Path) -> None:
    """t_u is the mean of the user's training days and the time bins span the training days; the
    held-out rows (the latest days) change neither, and are scored without drift."""
    from collabkit.data.splits import SplitSpec, make_split
    from collabkit.persist import load_model
    from collabkit.workflows import TrainConfig, pairs_of, train
    from tests.conftest import make_ratings

    table = make_ratings(n=900, seed=2)
    day = 10_000 + np.arange(len(table)) % 60  # 60 days, in row order
    table["timestamp"] = 86_400 * day
    split = SplitSpec(kind="time", valid_pct=0.3)
    settings = {"samples": 20, "burn_in": 5, "drift": True, "time_bins": 6}
    train(table, TrainConfig(model="bayesmf", split=split, settings=settings), log=None, out=tmp_path / "m")
    train_rows, valid_rows = make_split(table, split)
    trained = load_model(tmp_path / "m")
    model = trained.model
    assert isinstance(model, BayesianMF)
    first, last = int(day[train_rows].min()), int(day[train_rows].max())
    assert last < 10_059 and trained.config.settings.used()["n_days"] == last - first + 1
    users = trained.users.encode(table["user"])
    seen = np.unique(users[train_rows])
    from_train, from_all = (
        torch.zeros(len(seen), dtype=torch.float64),
        torch.zeros(len(seen), dtype=torch.float64),
    )
    for j, user in enumerate(seen):
        from_train[j] = float(day[train_rows][users[train_rows] == user].mean()) - first
        from_all[j] = float(day[users == user].mean()) - first
    assert torch.allclose(model.user_day[seen].double(), from_train, atol=1e-3)
    assert not torch.allclose(model.user_day[seen].double(), from_all, atol=1e-3)
    bins = model._time_bin(torch.tensor([0, last - first, last - first + 1]))
    assert bins.tolist() == [0, 5, 6]  # the last training day in the last bin; after it, none
    held = pairs_of(trained, table.iloc[valid_rows])
    assert torch.allclose(model(held), model(held[:, :2]), atol=1e-5)  # after the span: no drift


def test_drift_settings_round_trip_and_are_checked(tmp_path: Path) -> None:
    import json

    from collabkit.persist import load_model
    from collabkit.workflows import TrainConfig, pairs_of, train
    from tests.conftest import make_ratings

    config = ModelConfig("bayesmf", 5, 4, drift=True, time_bins=12, drift_power=0.3)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.settings.used()["time_bins"] == 12
    for bad, match in (({"time_bins": 0}, "time_bins"), ({"drift_power": 1.5}, "drift_power")):
        with pytest.raises(CollabkitError, match=match):
            ModelConfig("bayesmf", 3, 3, **bad)
    table = make_ratings(n=600, seed=1)
    table["timestamp"] = 86_400 * (10_000 + np.arange(len(table)) % 40)
    settings = {"samples": 12, "burn_in": 2, "drift": True, "time_bins": 4, "drift_power": 0.5}
    train(table, TrainConfig(model="bayesmf", settings=settings), log=None, out=tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["settings"]
    assert {k: saved[k] for k in ("drift", "time_bins", "drift_power")} == {
        "drift": True, "time_bins": 4, "drift_power": 0.5,
    }  # fmt: skip
    trained = load_model(tmp_path / "m")
    assert isinstance(trained.model, BayesianMF) and trained.model.item_bin_bias.shape[1] == 4
    x = pairs_of(trained, table)
    assert not torch.allclose(trained.model(x), trained.model(x[:, :2]))  # the drift is back


def test_a_config_saved_before_drift_loads_with_drift_off(tmp_path: Path) -> None:
    import json

    from collabkit.persist import config_checksum, load_model
    from collabkit.workflows import TrainConfig, pairs_of, train
    from tests.conftest import make_ratings

    old = {"n_factors": 10, "samples": 300, "burn_in": 50, "keep": 64, "implicit": "both", "days": True,
           "first_day": 10_000, "n_days": 30}  # fmt: skip
    assert set(old) == bayes.BEFORE_DRIFT

    class DriftByDefault(bayes.BayesSettings):
        drift: bool = True

    assert DriftByDefault(**old).drift is False  # a saved config: its model has no drift tables
    assert DriftByDefault(n_factors=10).drift is True  # settings given by hand take the default
    assert DriftByDefault(**old, drift=True).drift is True
    # a folder as an earlier collabkit wrote it: no drift settings, no drift tables
    table = make_ratings(n=600, seed=1)
    table["timestamp"] = 86_400 * (10_000 + np.arange(len(table)) % 30)
    quick = {"samples": 12, "burn_in": 2, "drift": False}
    train(table, TrainConfig(model="bayesmf", settings=quick), log=None, out=tmp_path / "m")
    before = load_model(tmp_path / "m")
    x = pairs_of(before, table)
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    for key in ("drift", "time_bins", "drift_power"):
        del doc["model"]["settings"][key]
    doc["config_sha256"] = config_checksum(doc)
    path.write_text(json.dumps(doc))
    after = load_model(tmp_path / "m")
    assert after.config.settings.used()["drift"] is False
    assert torch.equal(after.model(x), before.model(x))
