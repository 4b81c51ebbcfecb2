"""A newcomer's first hour: a title typed loosely, early stopping's last row, a smoothed loss plot,
and the chapter's `create_params` / `pca` cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import collabkit
from collabkit import (
    CollabDataLoaders,
    CSVLogger,
    EarlyStoppingCallback,
    Learner,
    Module,
    MSELossFlat,
    collab_learner,
    create_params,
    pca,
    set_seed,
    sigmoid_range,
)
from collabkit.cli import app
from collabkit.data.resolver import IdResolver, plain_title
from collabkit.data.vocab import Vocab
from collabkit.errors import AmbiguousIdError, CollabkitError, UnknownIdError
from collabkit.service import create_app
from collabkit.train.recorder import smooth_loss

runner = CliRunner()

TITLES = {
    100: "Star Wars (1977)",
    101: "Star Trek: First Contact (1996)",
    102: "Star Trek: The Wrath of Khan (1982)",
    103: "Godfather, The (1972)",
    104: "Godfather: Part II, The (1974)",
    105: "Chasing Amy (1997)",
    106: "Chasing Amy (1997)",
    107: "Titanic (1997)",
}


def titled_table(n_users: int = 30, n_items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Odd users like even items and the other way round; items 100.. carry TITLES."""
    rng = np.random.default_rng(seed)
    rows = [
        (u, i, float(rng.integers(4, 6) if u % 2 != i % 2 else rng.integers(1, 3)))
        for u in range(1, n_users + 1)
        for i in range(100, 100 + n_items)
        if rng.random() < 0.7
    ]
    table = pd.DataFrame(rows, columns=["user", "item", "rating"])
    table["title"] = [TITLES.get(i, f"Movie {i} (2000)") for i in table["item"]]
    return table


def resolver(table: pd.DataFrame) -> IdResolver:
    items = Vocab.from_values(table["item"], name="item")
    counts = np.bincount([items.o2i[i] for i in table["item"]], minlength=len(items))
    titles = dict(zip(table["item"], table["title"], strict=True))
    return IdResolver(Vocab.from_values(table["user"], name="user"), items, titles, counts)


# -- 1. "star wars" gets a "did you mean" -------------------------------------------------------------
def test_plain_title_is_what_a_person_types() -> None:
    assert plain_title("Star Wars (1977)") == "star wars"
    assert plain_title("Godfather, The (1972)") == "the godfather"
    assert plain_title("Star Trek: First Contact (1996)") == "star trek first contact"


def test_a_loose_title_is_refused_with_the_closest_titles_their_ids_and_counts() -> None:
    table = titled_table()
    count = table["item"].value_counts()
    resolve = resolver(table)
    with pytest.raises(UnknownIdError) as e:
        resolve.item("star wars")
    message = str(e.value)
    assert "\n" not in message and not isinstance(e.value, AmbiguousIdError)
    assert message == (
        "item 'star wars' is not an id or title the model knows; "
        f"did you mean 'Star Wars (1977)' (id 100, {count[100]} ratings)?"
    )
    # the article MovieLens moves to the end, any case: the title itself first, then the rest
    with pytest.raises(UnknownIdError) as e:
        resolve.item("the godfather")
    assert str(e.value).endswith(
        f"did you mean 'Godfather, The (1972)' (id 103, {count[103]} ratings), "
        f"'Godfather: Part II, The (1974)' (id 104, {count[104]} ratings)?"
    )
    with pytest.raises(UnknownIdError, match=r"did you mean 'Titanic \(1997\)' \(id 107"):
        resolve.item("Titanik")  # a typo: difflib's close match
    with pytest.raises(UnknownIdError, match=r"did you mean 'Star Wars \(1977\)'"):
        resolve.item("Star Wars (1978)")  # the wrong year


def test_suggestions_are_few_and_nothing_near_gets_the_plain_refusal() -> None:
    many = {i: f"Star Trek {k} (1990)" for k, i in enumerate(range(100, 108))}
    resolve = IdResolver(Vocab([1]), Vocab(list(many)), many, np.arange(9))
    with pytest.raises(UnknownIdError) as e:
        resolve.item("star trek")
    assert str(e.value).count("(id ") == 5 and "(id 107, 8 ratings)" in str(e.value)  # most rated
    resolve = resolver(titled_table())
    with pytest.raises(
        UnknownIdError, match=r"^item 'zzqqxx' is not an id or title the model knows \(12 items\)$"
    ):
        resolve.item("zzqqxx")
    with pytest.raises(UnknownIdError, match=r"\(12 items\)$"):
        resolve.item("1972")  # digits are an id: not offered the year's titles


def test_an_ambiguous_title_keeps_its_own_error() -> None:
    resolve = resolver(titled_table())
    with pytest.raises(AmbiguousIdError, match=r"names 2 items: id 10[56] .*; give the item by id$") as e:
        resolve.item("chasing amy (1997)")
    assert {c["item"] for c in e.value.candidates} == {105, 106} and "did you mean" not in str(e.value)
    assert resolve.item("star wars (1977)") == 100 and resolve.item("107") == 107


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    set_seed(0)
    dls = CollabDataLoaders.from_df(titled_table(), item_name="item", valid_pct=0.0, seed=0)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False)
    learn.fit_one_cycle(1, 3e-2)
    return Path(learn.export(str(tmp_path_factory.mktemp("m") / "dotbias")))


def test_the_command_says_did_you_mean_in_one_line(model_dir: Path) -> None:
    count = titled_table()["item"].value_counts()[100]
    result = runner.invoke(app, ["similar", str(model_dir), "star wars"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "collabkit: error: item 'star wars' is not an id or title the model knows; "
        f"did you mean 'Star Wars (1977)' (id 100, {count} ratings)?"
    )


def test_the_service_says_did_you_mean(model_dir: Path) -> None:
    with TestClient(create_app(model_dir)) as client:
        answer = client.get("/similar", params={"item": "star wars"})
    assert answer.status_code == 404
    assert "did you mean 'Star Wars (1977)' (id 100, " in answer.json()["detail"]


# -- 2. CSVLogger keeps the epoch at which early stopping fires ---------------------------------------
def _learner(tmp_path: Path) -> Learner:
    set_seed(0)
    dls = CollabDataLoaders.from_df(titled_table(), item_name="item", bs=64, seed=1)
    return collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False, path=tmp_path)


@pytest.mark.parametrize("logger_first", [False, True])
@pytest.mark.parametrize("logger_order", [None, 5])
def test_csv_logger_has_the_stopping_epoch_whatever_the_order(
    tmp_path: Path, logger_first: bool, logger_order: int | None
) -> None:
    learn = _learner(tmp_path)
    losses = iter([1.0, 0.9, 0.95, 0.96, 0.5, 0.4])
    real = learn.validate
    learn.validate = lambda dl=None: {**real(dl), "valid_loss": next(losses)}  # type: ignore[method-assign]
    early, logger = EarlyStoppingCallback(patience=2), CSVLogger()
    if logger_order is not None:
        logger.order = logger_order  # before early stopping's 10
    rows = learn.fit_one_cycle(6, 1e-2, cbs=[logger, early] if logger_first else [early, logger])
    assert early.stopped_epoch == 3 and len(rows) == 4
    log = pd.read_csv(tmp_path / "history.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]
    assert list(log["valid_loss"]) == [1.0, 0.9, 0.95, 0.96]


# -- 3. plot_loss smooths the training loss as fastai does ---------------------------------------------
def test_smooth_loss_worked_out_by_hand() -> None:
    # beta 0.5: avg 0.5, 1.25, 2.125 over weights 0.5, 0.75, 0.875
    assert smooth_loss([1.0, 2.0, 3.0], beta=0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    # beta 0.98 (the default): the first loss is itself; then 0.98 * 0.08 + 0.02 * 2 = 0.1184
    assert smooth_loss([4.0, 2.0]) == pytest.approx([4.0, 0.1184 / (1 - 0.98**2)])
    assert smooth_loss([3.0] * 50) == pytest.approx([3.0] * 50)  # debiased: no pull towards 0
    assert smooth_loss([]) == [] and smooth_loss([1.0, 5.0], beta=0.0) == [1.0, 5.0]
    with pytest.raises(CollabkitError, match="beta must be at least 0 and below 1, got 1"):
        smooth_loss([1.0], beta=1)


def test_plot_loss_draws_the_smoothed_loss_and_keeps_the_raw_one(tmp_path: Path) -> None:
    learn = _learner(tmp_path)
    learn.fit_one_cycle(2, 1e-2)
    rec = learn.recorder
    smoothed = rec.plot_loss(skip_start=2).axes[0].lines[0].get_ydata()
    raw = rec.plot_loss(skip_start=2, smooth=False).axes[0].lines[0].get_ydata()
    assert list(raw) == pytest.approx(rec.losses[2:])
    assert list(smoothed) == pytest.approx(smooth_loss(rec.losses)[2:])
    assert rec.smooth_losses() == smooth_loss(rec.losses) and list(smoothed) != pytest.approx(list(raw))


# -- 4. the chapter's create_params and pca ------------------------------------------------------------
def test_create_params_is_the_chapters() -> None:
    torch.manual_seed(0)
    p = create_params([300, 50])
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad and p.shape == (300, 50)
    assert 0.009 < float(p.detach().std()) < 0.011 and abs(float(p.detach().mean())) < 0.001
    assert create_params([7]).shape == (7,)
    namespace: dict[str, object] = {}
    exec("from collabkit import *", namespace)  # noqa: S102
    assert namespace["create_params"] is create_params and "create_params" in collabkit.__all__


class DotProductBias(Module):
    """The chapter's model from scratch, as it writes it (no super().__init__(), create_params)."""

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):  # noqa: ANN001, ANN204
        self.user_factors = create_params([n_users, n_factors])
        self.user_bias = create_params([n_users])
        self.movie_factors = create_params([n_movies, n_factors])
        self.movie_bias = create_params([n_movies])
        self.y_range = y_range

    def forward(self, x):  # noqa: ANN001, ANN201
        users = self.user_factors[x[:, 0]]
        movies = self.movie_factors[x[:, 1]]
        res = (users * movies).sum(dim=1)
        res += self.user_bias[x[:, 0]] + self.movie_bias[x[:, 1]]
        return sigmoid_range(res, *self.y_range)


def test_the_chapters_dot_product_bias_from_scratch_trains(tmp_path: Path) -> None:
    set_seed(0)
    dls = CollabDataLoaders.from_df(titled_table(60, 12), item_name="title", bs=64, seed=42)
    n_users, n_movies = len(dls.classes["user"]), len(dls.classes["title"])
    model = DotProductBias(n_users, n_movies, 50)
    learn = Learner(dls, model, loss_func=MSELossFlat(), log=None, show_progress=False, path=tmp_path)
    before = learn.validate()["valid_loss"]
    learn.fit_one_cycle(1, 5e-2, wd=0.1)
    after = learn.history[-1]["valid_loss"]
    assert after < before * 0.95, (before, after)  # 2.57 -> 2.35 in one epoch of 8 batches
    assert learn.model.movie_bias.grad is not None  # the parameters were found and trained
    # the chapter's interpretation cell, with pca(t, 3) for its t.pca(3)
    movie_pca = pca(model.movie_factors.detach(), 3)
    assert movie_pca.shape == (n_movies, 3)


# -- 5. crossval's header names every fold (workflows.folds_text, commit 02a259d) ---------------------
def test_the_crossval_header_names_the_folds() -> None:
    from collabkit.data.splits import SplitSpec
    from collabkit.workflows import folds_text

    named = [SplitSpec(f"u{k}") for k in range(1, 6)]
    assert folds_text(named) == "folds u1, u2, u3, u4, u5"
    kfold = [SplitSpec("kfold", seed=42, fold=i, k=5) for i in range(5)]
    assert folds_text(kfold) == "5 folds of kfold (seed 42)"
