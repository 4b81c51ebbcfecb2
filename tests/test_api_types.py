"""Wrong types and extreme values at every public entry point: a right answer or one CollabkitError
line naming the argument, never a TypeError, OverflowError, IndexError or the like from deep inside.

Table-driven: each entry point is called with every value of BAD in the argument it names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from collabkit import CollabDataLoaders, CollabkitError, Recommender, collab_learner, set_seed
from collabkit.bundle import trained_from_learner
from collabkit.collab import collab_config, load_learner
from collabkit.scoring import score_pairs, training_facts
from tests.conftest import make_ratings

BAD: dict[str, Any] = {
    "str": "abc",
    "numeric str": "5",
    "float": 2.5,
    "bool": True,
    "none": None,
    "nested": [[1, 2]],
    "nan": float("nan"),
    "inf": float("inf"),
    "negative": -3,
    "huge": 10**30,
    "empty": [],
    "zero": 0,
    "dict": {"a": 1},
}
U, I = 1, 100  # a trained user and item of make_ratings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    set_seed(0)
    dls = CollabDataLoaders.from_df(make_ratings(n_users=20, n_items=15, n=250), bs=256, seed=1)
    learn = collab_learner(dls, n_factors=3, y_range=(0, 5.5), log=None, show_progress=False)
    learn.fit_one_cycle(1, 1e-2)
    folder = learn.export(str(tmp_path_factory.mktemp("api") / "m"))
    return {"dls": dls, "learn": learn, "rec": Recommender(trained_from_learner(learn)), "folder": folder}


def fresh(w: dict[str, Any]) -> Any:
    return collab_learner(w["dls"], n_factors=3, y_range=(0, 5.5), log=None, show_progress=False)


def pairs(w: dict[str, Any], **kw: Any) -> Any:
    learn = w["learn"]
    facts = training_facts(learn.dls.train.x, learn.dls.train.y, learn.dls.n_users, learn.dls.n_items)
    a = {"model": learn.model, "x": learn.dls.valid.x, "y": learn.dls.valid.y,
         "user_counts": facts.user_counts, "item_counts": facts.item_counts,
         "train_mean": facts.mean} | kw  # fmt: skip
    return score_pairs(**a)


# (entry point and argument, call with the value, words any of which the message must hold)
CALLS: list[tuple[str, Callable[[dict[str, Any], Any], Any], tuple[str, ...]]] = [
    ("fit n_epoch", lambda w, v: fresh(w).fit(v, 1e-3), ("n_epoch",)),
    ("fit lr", lambda w, v: fresh(w).fit(1, v), ("lr", "learning rate")),
    ("fit wd", lambda w, v: fresh(w).fit(1, 1e-3, wd=v), ("wd",)),
    ("fit start_epoch", lambda w, v: fresh(w).fit(2, 1e-3, start_epoch=v), ("start_epoch",)),
    ("fit cbs", lambda w, v: fresh(w).fit(1, 1e-3, cbs=v), ("cbs",)),
    ("fit_one_cycle n_epoch", lambda w, v: fresh(w).fit_one_cycle(v, 1e-3), ("n_epoch",)),
    ("fit_one_cycle lr_max", lambda w, v: fresh(w).fit_one_cycle(1, v), ("lr_max", "learning rate")),
    ("fit_one_cycle div", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, div=v), ("div",)),
    ("fit_one_cycle div_final", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, div_final=v), ("div_final",)),
    ("fit_one_cycle pct_start", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, pct_start=v), ("pct_start",)),
    ("fit_one_cycle wd", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, wd=v), ("wd",)),
    ("fit_one_cycle moms", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, moms=v), ("moms",)),
    ("fit_one_cycle moms[1]", lambda w, v: fresh(w).fit_one_cycle(1, 1e-3, moms=(0.9, v, 0.9)), ("moms[1]",)),
    (
        "lr_find start_lr",
        lambda w, v: w["learn"].lr_find(start_lr=v, num_it=10, show_plot=False),
        ("start_lr",),
    ),
    ("lr_find end_lr", lambda w, v: w["learn"].lr_find(end_lr=v, num_it=10, show_plot=False), ("end_lr",)),
    ("lr_find num_it", lambda w, v: w["learn"].lr_find(num_it=v, show_plot=False), ("num_it",)),
    (
        "lr_find stop_div",
        lambda w, v: w["learn"].lr_find(num_it=10, stop_div=v, show_plot=False),
        ("stop_div",),
    ),
    ("Learner lr", lambda w, v: collab_learner(w["dls"], n_factors=3, lr=v, log=None), ("lr",)),
    ("Learner wd", lambda w, v: collab_learner(w["dls"], n_factors=3, wd=v, log=None), ("wd",)),
    ("Learner device", lambda w, v: collab_learner(w["dls"], n_factors=3, device=v, log=None), ("device",)),
    (
        "Learner show_progress",
        lambda w, v: collab_learner(w["dls"], show_progress=v, log=None),
        ("show_progress",),
    ),
    ("Learner metrics", lambda w, v: collab_learner(w["dls"], metrics=v, log=None), ("metrics",)),
    ("Learner path", lambda w, v: collab_learner(w["dls"], path=v, log=None), ("path",)),
    ("show_results n", lambda w, v: w["learn"].show_results(n=v, show=False), ("n ",)),
    ("show_results ds_idx", lambda w, v: w["learn"].show_results(ds_idx=v, show=False), ("ds_idx",)),
    ("get_preds ds_idx", lambda w, v: w["learn"].get_preds(ds_idx=v), ("ds_idx",)),
    ("Learner.predict rows", lambda w, v: w["learn"].predict(v), ("rows", "row")),
    ("Learner.predict pair", lambda w, v: w["learn"].predict([(v, I)]), ("user",)),
    (
        "collab_learner n_factors",
        lambda w, v: collab_learner(w["dls"], n_factors=v, log=None),
        ("n_factors",),
    ),
    ("collab_learner y_range", lambda w, v: collab_learner(w["dls"], y_range=v, log=None), ("y_range",)),
    ("collab_learner model", lambda w, v: collab_learner(w["dls"], model=v, log=None), ("model",)),
    ("collab_learner settings", lambda w, v: collab_learner(w["dls"], settings=v, log=None), ("setting",)),
    ("collab_learner use_nn", lambda w, v: collab_learner(w["dls"], use_nn=v, log=None), ("use_nn",)),
    ("collab_config n_factors", lambda w, v: collab_config(w["dls"], n_factors=v), ("n_factors",)),
    ("collab_config model", lambda w, v: collab_config(w["dls"], model=v), ("model",)),
    ("load_learner path", lambda w, v: load_learner(v), ("path", "model folder")),
    ("load_learner cpu", lambda w, v: load_learner(w["folder"], cpu=v), ("cpu",)),
    ("Recommender.load path", lambda w, v: Recommender.load(v), ("path", "model folder")),
    ("Recommender trained", lambda w, v: Recommender(v), ("trained",)),
    (
        "Recommender score_budget",
        lambda w, v: Recommender(w["rec"].trained, score_budget=v).recommend(U),
        ("score_budget",),
    ),
    ("predict users", lambda w, v: w["rec"].predict(v, [I]), ("users", "user")),
    ("predict items", lambda w, v: w["rec"].predict([U], v), ("items", "item")),
    ("predict one user", lambda w, v: w["rec"].predict([v], [I]), ("users", "user")),
    ("predict unknown", lambda w, v: w["rec"].predict([U], [I], unknown=v), ("unknown",)),
    ("predict_details items", lambda w, v: w["rec"].predict_details([U], v), ("items", "item")),
    ("recommend user", lambda w, v: w["rec"].recommend(v), ("user",)),
    ("recommend n", lambda w, v: w["rec"].recommend(U, n=v), ("n ",)),
    ("recommend_many users", lambda w, v: w["rec"].recommend_many(v), ("users", "user")),
    ("recommend_many min_count", lambda w, v: w["rec"].recommend_many([U], min_count=v), ("min_count",)),
    ("recommend_many items", lambda w, v: w["rec"].recommend_many([U], items=v), ("items", "item")),
    ("recommend_many exclude", lambda w, v: w["rec"].recommend_many([U], exclude=v), ("exclude", "item")),
    (
        "recommend_many exclude_seen",
        lambda w, v: w["rec"].recommend_many([U], exclude_seen=v),
        ("exclude_seen",),
    ),
    ("recommend_many unknown", lambda w, v: w["rec"].recommend_many([U], unknown=v), ("unknown",)),
    (
        "recommend_many popularity_penalty",
        lambda w, v: w["rec"].recommend_many([U], popularity_penalty=v),
        ("popularity_penalty",),
    ),
    ("popular n", lambda w, v: w["rec"].popular(n=v), ("n ",)),
    ("popular min_count", lambda w, v: w["rec"].popular(min_count=v), ("min_count",)),
    ("popular exclude", lambda w, v: w["rec"].popular(exclude=v), ("exclude", "item")),
    ("fold_in ratings", lambda w, v: w["rec"].fold_in(v), ("ratings", "item")),
    ("fold_in a rating", lambda w, v: w["rec"].fold_in({I: v}), ("rating",)),
    (
        "fold_in an item",
        lambda w, v: w["rec"].fold_in({v if isinstance(v, (str, int, float)) else str(v): 3}),
        ("item",),
    ),
    ("fold_in strength", lambda w, v: w["rec"].fold_in({I: 3}, strength=v), ("strength",)),
    ("recommend_for_ratings ratings", lambda w, v: w["rec"].recommend_for_ratings(v), ("ratings", "item")),
    ("recommend_for_ratings n", lambda w, v: w["rec"].recommend_for_ratings({I: 3}, n=v), ("n ",)),
    (
        "recommend_for_ratings strength",
        lambda w, v: w["rec"].recommend_for_ratings({I: 3}, strength=v),
        ("strength",),
    ),
    ("predict_new items", lambda w, v: w["rec"].predict_new(w["rec"].fold_in({I: 3}), v), ("items", "item")),
    ("predict_new new", lambda w, v: w["rec"].predict_new(v, [I]), ("new",)),
    ("similar_items items", lambda w, v: w["rec"].similar_items(v), ("items", "item")),
    ("similar_items n", lambda w, v: w["rec"].similar_items(I, n=v), ("n ",)),
    ("similar_items min_count", lambda w, v: w["rec"].similar_items(I, min_count=v), ("min_count",)),
    ("similar_users user", lambda w, v: w["rec"].similar_users(v), ("user",)),
    ("similar_users n", lambda w, v: w["rec"].similar_users(U, n=v), ("n ",)),
    ("similar_users min_count", lambda w, v: w["rec"].similar_users(U, min_count=v), ("min_count",)),
    ("score_pairs x", lambda w, v: pairs(w, x=v), ("x ",)),
    ("score_pairs y", lambda w, v: pairs(w, y=v), ("y ",)),
    ("score_pairs user_counts", lambda w, v: pairs(w, user_counts=v), ("user_counts",)),
    ("score_pairs train_mean", lambda w, v: pairs(w, train_mean=v), ("train_mean",)),
    ("score_pairs bs", lambda w, v: pairs(w, bs=v), ("bs",)),
    ("score_pairs metrics", lambda w, v: pairs(w, metrics=v), ("metrics",)),
]


@pytest.mark.parametrize("entry", CALLS, ids=[c[0] for c in CALLS])
def test_a_wrong_value_is_a_collabkit_error_naming_the_argument(
    world: dict[str, Any], entry: tuple[str, Callable[[dict[str, Any], Any], Any], tuple[str, ...]]
) -> None:
    label, call, words = entry
    wrong: list[str] = []
    for kind, value in BAD.items():
        try:
            call(world, value)
        except CollabkitError as e:
            text = str(e)
            if "\n" in text or not any(w in text for w in words):
                wrong.append(f"{kind}: CollabkitError not naming {words}: {text[:120]}")
        except Exception as e:  # noqa: BLE001 - any other type is the failure this test looks for
            wrong.append(f"{kind}: {type(e).__name__}: {str(e)[:120]}")
    assert not wrong, f"{label}:\n" + "\n".join(wrong)


def test_the_reported_case_a_negative_learning_rate_is_refused(world: dict[str, Any]) -> None:
    learn = fresh(world)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(CollabkitError, match=r"lr_max must be a finite number above 0, got -0\.01"):
        learn.fit_one_cycle(1, -1e-2)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())  # nothing trained
    assert learn.history == []


def test_fastai_learning_rate_forms_are_taken(world: dict[str, Any]) -> None:
    """A slice (its stop, one parameter group as in fastai) or a one-element list is a learning rate."""
    for lr in (slice(1e-3), slice(1e-4, 1e-3), [1e-3]):
        learn = fresh(world)
        learn.fit_one_cycle(1, lr)
        assert learn.last_fit is not None and learn.last_fit.lr == pytest.approx(1e-3)
    with pytest.raises(CollabkitError, match="lr_max"):
        fresh(world).fit_one_cycle(1, slice(1e-2, 1e-3))  # from high to low
    with pytest.raises(CollabkitError, match="one parameter group"):
        fresh(world).fit_one_cycle(1, [1e-3, 1e-2])


def test_good_values_still_answer(world: dict[str, Any]) -> None:
    """The checks refuse nonsense only: integral floats, NumPy numbers and tuples still work."""
    import numpy as np

    rec = world["rec"]
    assert len(rec.recommend(np.int64(U), n=3.0)) == 3
    assert len(rec.popular(n=np.int64(2), min_count=np.int64(1))) == 2
    assert rec.predict((U,), (I,)).shape == (1,)
    assert rec.predict(pd.Series([U]), np.array([I])).shape == (1,)
    assert rec.predict([], []).shape == (0,)
    learn = fresh(world)
    learn.fit(np.int64(1), np.float32(1e-3), wd=0)
    assert len(learn.history) == 1


def test_unknown_options_that_are_passed_on_are_refused_by_name(world: dict[str, Any]) -> None:
    """Options forwarded to another function are checked here, not left to fail inside it."""
    with pytest.raises(CollabkitError, match=r"unknown option 'bogus'.*exclude_seen"):
        world["rec"].recommend(U, bogus=1)
    with pytest.raises(CollabkitError, match=r"collab_learner: unknown keyword argument 'bogus'.*lr"):
        collab_learner(world["dls"], bogus=1)
    with pytest.raises(CollabkitError, match=r"load_learner: unknown keyword argument 'device'"):
        load_learner(world["folder"], device="cpu")
    with pytest.raises(CollabkitError, match="unknown setting 'bogus'"):
        collab_config(world["dls"], bogus=1)


@pytest.mark.parametrize(
    "call",
    [
        lambda w: fresh(w).fit_one_cycle(1, lr=1e-3),  # fastai's name is lr_max
        lambda w: w["learn"].lr_find(bogus=1),
        lambda w: w["rec"].recommend_many([U], bogus=1),
        lambda w: w["rec"].similar_items(I, bogus=1),
    ],
)
def test_a_misspelt_keyword_of_a_method_is_pythons_own_error_naming_it(
    world: dict[str, Any], call: Callable[[dict[str, Any]], Any]
) -> None:
    """A keyword a method's own signature lacks is refused by Python at the call, naming it (as every
    library's methods do, and as a type checker flags); nothing runs."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument '(lr|bogus)'"):
        call(world)


def test_a_bool_is_not_an_id(world: dict[str, Any]) -> None:
    """True == 1: a bool would silently stand for the id 1 of a table with integer ids."""
    with pytest.raises(CollabkitError, match="raw id"):
        world["rec"].predict([True], [I])
    with pytest.raises(CollabkitError, match="not a number"):
        world["rec"].fold_in({I: True})


def test_folder_argument_types(world: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(CollabkitError, match="path must be a folder path"):
        Recommender.load(3)  # type: ignore[arg-type]
    assert Recommender.load(Path(world["folder"])).recommend(U, n=2).items
