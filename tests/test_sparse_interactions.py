"""The ranking families keep their interactions sparse: the CSR's operations match dense algebra,
no family saves or builds a users x items matrix, earlier dense folders still load, EASE states its
memory need and caps its items, and `min_rating` chooses which ratings count as interactions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.data.splits import SplitSpec
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model, model_names
from collabkit.models.base import family
from collabkit.models.ranking_base import RankingModel
from collabkit.models.sparse import CSR, mostly_zero_times
from collabkit.persist import load_model
from collabkit.recommend import Recommender
from collabkit.workflows import TrainConfig, train

RANKING = [n for n in model_names() if issubclass(family(n), RankingModel)]
SPARSE = [n for n in RANKING if family(n).uses_interactions]


def random_pairs(seed: int, n_rows: int, n_cols: int, nnz: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack(
        [torch.randint(0, n_rows, (nnz,), generator=g), torch.randint(0, n_cols, (nnz,), generator=g)], 1
    )
    y = torch.randint(1, 6, (nnz,), generator=g).float()
    return x, y


def dense_of(x: torch.Tensor, y: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    out = torch.zeros(n_rows, n_cols)
    out[x[:, 0], x[:, 1]] = y  # a repeated cell keeps its last value, as CSR.from_pairs does
    return out


def test_csr_operations_match_dense_algebra() -> None:
    x, y = random_pairs(0, 40, 30, 300)  # with repeated cells
    m = CSR.from_pairs(x[:, 0], x[:, 1], y, 40, 30)
    d = dense_of(x, y, 40, 30)
    idx = torch.tensor([3, 0, 39, 3])
    assert torch.equal(m.dense_rows(idx), d[idx])
    assert torch.equal(m.transpose().dense_rows(torch.arange(30)), d.T)
    v = torch.randn(30, 4)
    assert torch.allclose(m.matmul(v), d @ v, atol=1e-5)
    assert torch.allclose(m.row_norms(), d.norm(dim=1), atol=1e-5)
    pos = torch.full((30,), -1, dtype=torch.long)
    pos[torch.tensor([5, 2, 9])] = torch.tensor([0, 1, 2])
    assert torch.equal(m.keep_columns(pos, 3).dense_rows(torch.arange(40)), d[:, [5, 2, 9]])
    w = torch.zeros(3, 40)
    w[0, 1], w[0, 7], w[2, 39] = 0.5, 2.0, -1.0
    which, rows = torch.nonzero(w, as_tuple=True)
    assert torch.allclose(m.weighted_rows(which, rows, w[which, rows], 3), w @ d, atol=1e-5)


def test_a_product_of_mostly_zero_rows_matches_the_dense_one_on_either_kernel() -> None:
    g = torch.Generator().manual_seed(0)
    sparse_rows = (torch.rand(16, 500, generator=g) < 0.01).float() * 3.0  # 1%: the sparse kernel
    dense_rows = torch.rand(16, 500, generator=g)  # every cell set: the dense product
    other = torch.randn(500, 7, generator=g)
    for rows in (sparse_rows, dense_rows, sparse_rows[:, 100:400]):  # a column slice, as easeknn's
        part = other[: rows.shape[1]]
        assert torch.allclose(mostly_zero_times(rows, part), rows @ part, atol=1e-4)
    assert mostly_zero_times(torch.zeros(0, 500), other).shape == (0, 7)


def fitted(
    name: str, x: torch.Tensor, y: torch.Tensor, n_users: int, n_items: int, **settings: object
) -> RankingModel:
    model = build_model(ModelConfig(name, n_users, n_items, **settings))
    assert isinstance(model, RankingModel)
    torch.manual_seed(0)
    model.fit_direct(x, y)
    return model


@pytest.mark.parametrize("name", SPARSE)
def test_no_family_saves_a_users_by_items_matrix(name: str) -> None:
    n_users, n_items = 57, 43
    x, y = random_pairs(1, n_users, n_items, 600)
    model = fitted(name, x, y, n_users, n_items)
    for key, tensor in model.state_dict().items():
        assert tensor.numel() < n_users * n_items or tensor.shape[-2:] == (n_items, n_items), (
            f"{name} saves {key} {tuple(tensor.shape)}: as big as users x items"
        )
        assert not (n_users in tensor.shape and n_items in tensor.shape), (
            f"{name} saves {key} {tuple(tensor.shape)}"
        )


def test_ease_matches_stecks_closed_form() -> None:
    n_users, n_items, l2 = 80, 30, 7.0
    x, y = random_pairs(4, n_users, n_items, 600)
    d = (dense_of(x, torch.ones(len(y)), n_users, n_items) > 0).double()
    p = torch.linalg.inv(d.T @ d + l2 * torch.eye(n_items, dtype=torch.float64))
    b = -p / p.diagonal()[None, :]  # B = I - P / diag(P): zero diagonal
    b.fill_diagonal_(0.0)
    model = fitted("ease", x, y, n_users, n_items, l2=l2)
    assert torch.allclose(model.weights.double(), b, atol=1e-6)
    got = model.score_block(model.user_rows(torch.arange(n_users)), model.item_side(torch.arange(n_items)))
    assert torch.allclose(got.double(), d @ b, atol=1e-4)


def test_itemknn_and_userknn_match_their_dense_definitions() -> None:
    n_users, n_items, k = 60, 35, 5
    x, y = random_pairs(2, n_users, n_items, 500)
    d = (dense_of(x, torch.ones(len(y)), n_users, n_items) > 0).float()
    users = torch.arange(n_users)
    # item kNN: each item keeps its k most cosine-similar items; a score sums the user's picks' lists
    sim = d.T @ d / (d.norm(dim=0)[:, None] * d.norm(dim=0)[None, :] + 1.0)
    sim.fill_diagonal_(0.0)
    top, at = sim.topk(k, dim=1)
    lists = torch.zeros_like(sim).scatter_(1, at, top.clamp_min(0))
    model = fitted("itemknn", x, y, n_users, n_items, k=k, shrink=1.0)
    got = model.score_block(model.user_rows(users), model.item_side(torch.arange(n_items)))
    assert torch.allclose(got, d @ lists, atol=1e-4)
    # user kNN: each user's k most similar users; a score sums the neighbours' picks
    usim = d @ d.T / (d.norm(dim=1)[:, None] * d.norm(dim=1)[None, :]).clamp_min(1e-12)
    usim.fill_diagonal_(0.0)
    top, at = usim.topk(k, dim=1)
    neigh = torch.zeros_like(usim).scatter_(1, at, top.clamp_min(0))
    model = fitted("userknn", x, y, n_users, n_items, k=k)
    got = model.score_block(model.user_rows(users), model.item_side(torch.arange(n_items)))
    assert torch.allclose(got, neigh @ d, atol=1e-4)
    pairs = torch.tensor([[0, 3], [5, 3], [0, 3], [59, 34]])  # forward: pair by pair, repeats allowed
    assert torch.allclose(model(pairs), (neigh @ d)[pairs[:, 0], pairs[:, 1]], atol=1e-4)


@pytest.mark.parametrize("name", SPARSE)
def test_earlier_dense_folders_load_into_todays_layout(name: str) -> None:
    """A state saved before the interactions were sparse (a dense `interactions`, and itemknn's
    dense similarity matrix) loads and scores exactly as the model it came from."""
    n_users, n_items = 30, 25
    x, y = random_pairs(3, n_users, n_items, 300)
    model = fitted(name, x, y, n_users, n_items)
    old = dict(model.state_dict())
    prefixes = {"easeknn": ["ease.", "knn."]}.get(name, [""])
    for p in prefixes:
        old[p + "interactions"] = torch.ones(n_users, n_items)
    if name == "itemknn":
        dense = torch.zeros(n_items, n_items).scatter_(1, old.pop("neighbours"), old["similarity"])
        old["similarity"] = dense
    cls = family(name)
    shapes = cls.upgrade_shapes({k: tuple(v.shape) for k, v in old.items()})
    assert set(shapes) == set(model.state_dict())
    again = build_model(ModelConfig(name, n_users, n_items))
    again.load_state_dict(cls.upgrade_state(old), strict=True)
    again.attach_training(x, y)
    users, items = torch.arange(n_users), torch.arange(n_items)
    want = model.score_block(model.user_rows(users), model.item_side(items))
    got = again.score_block(again.user_rows(users), again.item_side(items))
    if name == "itemknn":  # ties among zero similarities may pick other (zero-weight) neighbours
        assert torch.allclose(got, want, atol=1e-5)
    else:
        assert torch.equal(got, want)


def test_a_ranking_model_refuses_to_score_without_interactions() -> None:
    model = build_model(ModelConfig("ease", 10, 10))
    with pytest.raises(CollabkitError, match="no training interactions"):
        model.user_rows(torch.tensor([1]))


def ml_like(n_users: int = 80, n_items: int = 60, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)  # a long tail: a cap leaves out the rarely rated items
    rows = {
        (u, int(rng.choice(n_items, p=pop / pop.sum())) + 1) for u in range(1, n_users + 1) for _ in range(12)
    }
    users, items = zip(*sorted(rows), strict=True)
    return pd.DataFrame(
        {"user": users, "item": items, "rating": rng.integers(1, 6, len(users)).astype(float)}
    )


def test_ease_states_its_memory_need_and_the_cap_that_fits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import collabkit.models.ease as ease

    monkeypatch.setattr(ease, "available_memory", lambda: 20 * 40 * 40)  # room for 40 items, not 61
    table = ml_like()
    split = SplitSpec(kind="random", valid_pct=0.2)
    with pytest.raises(CollabkitError, match=r"items need .* GB .* -o max_items="):
        train(table, TrainConfig(model="ease", split=split), log=None)
    train(
        table,
        TrainConfig(model="ease", settings={"max_items": 30}, split=split),
        log=None,
        out=tmp_path / "m",
    )
    trained = load_model(tmp_path / "m")
    kept = set(torch.argsort(-trained.item_counts, stable=True)[:30].tolist())
    listed = Recommender(trained).recommend_many(list(table.user.unique()[:20]), n=20, min_count=1)
    assert all(len(r.items) == 20 for r in listed)
    for r in listed:
        assert set(trained.items.encode(list(r.items), "error").tolist()) <= kept
    scored = trained.model.scored_items()
    assert scored is not None and int(scored.sum()) == 30


def test_min_rating_keeps_only_the_ratings_that_count() -> None:
    x, y = random_pairs(5, 40, 30, 400)
    liked = y >= 4
    for name in SPARSE:
        with_threshold = fitted(name, x, y, 40, 30, min_rating=4.0)
        only_liked = fitted(name, x[liked], y[liked], 40, 30)
        users, items = torch.arange(40), torch.arange(30)
        a = with_threshold.score_block(with_threshold.user_rows(users), with_threshold.item_side(items))
        b = only_liked.score_block(only_liked.user_rows(users), only_liked.item_side(items))
        assert torch.allclose(a, b, atol=1e-5), name


@pytest.mark.parametrize("name", SPARSE)
def test_a_wide_sparse_table_trains_and_recommends_without_users_by_items_memory(
    name: str, tmp_path: Path
) -> None:
    """100,000 users x 50,000 items (5 G cells: 20 GB dense) with 60,000 ratings, under a 5 GB
    address-space limit: any dense users x items allocation fails, so this passes only sparse."""
    tmp = tmp_path
    script = textwrap.dedent(
        f"""
        import resource, numpy as np, pandas as pd
        resource.setrlimit(resource.RLIMIT_AS, (5 * 2**30, 5 * 2**30))
        from collabkit.data.splits import SplitSpec
        from collabkit.recommend import Recommender
        from collabkit.workflows import TrainConfig, train
        from collabkit.persist import load_model
        rng = np.random.default_rng(0)
        n = 40_000
        table = pd.DataFrame({{"user": rng.integers(1, 60_001, n), "item": rng.zipf(1.3, n) % 40_000 + 1,
                               "rating": rng.integers(1, 6, n).astype(float)}})
        table = table.drop_duplicates(["user", "item"])
        settings = {{"max_items": 3000}} if "{name}" in ("ease", "easeknn") else {{}}
        train(table, TrainConfig(model="{name}", settings=settings,
              split=SplitSpec(kind="random", valid_pct=0.1)), log=None, out="{tmp}/m")
        rec = Recommender(load_model("{tmp}/m"))
        lists = rec.recommend_many(list(table.user.unique()[:300]), n=10, min_count=1, unknown="popular")
        print("ok", sum(len(r.items) for r in lists))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ") and int(done.stdout.split()[1]) > 0


def test_a_saved_sparse_model_loads_and_recommends_as_fitted(tmp_path: Path) -> None:
    """What `load_model` rebuilds from the folder's training rows scores as the fitted model did."""
    table = ml_like()
    split = SplitSpec(kind="random", valid_pct=0.2)
    train(table, TrainConfig(model="easeknn", split=split), log=None, out=tmp_path / "m")
    trained = load_model(tmp_path / "m")
    again = build_model(ModelConfig("easeknn", len(trained.users), len(trained.items)))
    again.fit_direct(trained.train_x, trained.train_y)
    users = torch.arange(1, len(trained.users))
    items = torch.arange(len(trained.items))
    want = again.score_block(again.user_rows(users), again.item_side(items))
    got = trained.model.score_block(trained.model.user_rows(users), trained.model.item_side(items))
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", [*SPARSE, "ials"])
def test_a_threshold_above_every_rating_is_refused_not_a_silent_zero(name: str) -> None:
    """On a table of 1s (clicks), min_rating 4 keeps nothing: one line saying so, never all-zero scores."""
    x, _ = random_pairs(7, 20, 15, 120)
    y = torch.ones(len(x))
    model = build_model(ModelConfig(name, 20, 15, min_rating=4.0))
    assert isinstance(model, RankingModel)
    with pytest.raises(
        CollabkitError, match=r"min_rating 4 keeps none of the 120 training ratings \(they run 1\.\.1\)"
    ):
        model.fit_direct(x, y)


def test_ials_counts_only_the_ratings_at_its_threshold() -> None:
    x, y = random_pairs(8, 40, 30, 500)
    liked = y >= 3
    torch.manual_seed(0)
    a = build_model(ModelConfig("ials", 40, 30, min_rating=3.0, n_factors=4, iterations=3))
    a.fit_direct(x, y)
    torch.manual_seed(0)
    b = build_model(ModelConfig("ials", 40, 30, n_factors=4, iterations=3))
    b.fit_direct(x[liked], y[liked])
    assert torch.allclose(a.user_factors, b.user_factors, atol=1e-5)
    assert torch.allclose(a.item_factors, b.item_factors, atol=1e-5)
