"""Answers in the table's own terms (the issue "A newcomer's first hour").

1. A rating is never past the training ratings' range: the facade clips every rating it returns
   (predict, predict_details, predict_new, a rating model's lists, the command's, the service's);
   a family that predicts no ratings refuses `predict` in words that fit every way in.
2. The listed scores are what ordered the list: with a popularity penalty `score` is the lowered
   score and `model_score` the model's own, in the library, the command's table and its JSON.
3. Neighbours and answers are items with at least `MIN_COUNT` training ratings by default, the
   outputs say so, and `similar` shows each neighbour's rating count.

Parametrised over the registry (`model_names()`), skipping nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.data.splits import SplitSpec
from collabkit.defaults import MIN_COUNT
from collabkit.errors import CollabkitError
from collabkit.interpret import similar_items_table
from collabkit.models import family, model_names
from collabkit.recommend import NewUser, Recommender
from collabkit.workflows import TrainConfig, train
from tests.conftest import make_ratings

FAMILIES = model_names()
runner = CliRunner()
RARE = {900: 1, 901: 2, 902: 3}  # items rated by only this many users


def table_with_rare_items() -> pd.DataFrame:
    """A learnable table (about 24 training ratings an item) plus three items rated once to thrice."""
    table = make_ratings(n_users=50, n_items=30, n=900, seed=3)
    rows = [
        {"user": u, "item": item, "rating": 5.0, "timestamp": 800_000_000}  # earliest: trained on
        for item, k in RARE.items()
        for u in range(1, k + 1)
    ]
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return table_with_rare_items()


@pytest.fixture(scope="module")
def saved(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family trained once; the epoch-trained ones long enough that a fold-in can pass 5."""
    root = tmp_path_factory.mktemp("terms")
    out = {}
    for name in FAMILIES:
        out[name] = root / name
        more = {"epochs": 12, "lr": 3e-2} if family(name).recipes else {}
        train(
            table, TrainConfig(model=name, split=SplitSpec("last"), seed=0, **more), out=out[name], log=None
        )
    return out


def trained_pairs(rec: Recommender) -> tuple[list[Any], list[Any]]:
    """Every (user, item) pair of users and items with training ratings, as raw ids."""
    users = [rec.users[int(u)] for u in np.flatnonzero(rec.user_counts.numpy() > 0)]
    items = [rec.items[int(i)] for i in np.flatnonzero(rec.item_counts.numpy() > 0)]
    return [u for u in users for _ in items], [i for _ in users for i in items]


def eager_fan(rec: Recommender) -> NewUser:
    """A new user who gives 5 to the eight items the average user likes best, barely pulled back."""
    top = rec.popular(8, min_count=1).items
    return rec.fold_in(dict.fromkeys(top, 5.0), strength=0.05)


def own_ratings(rec: Recommender, new: NewUser) -> np.ndarray:
    """The model's unclipped ratings of every item for a folded-in user (its own output)."""
    with torch.inference_mode():
        side = rec.model.item_side(torch.arange(len(rec.items)))
        return rec.model.raw_to_rating(rec.model.score_block(new.row[None], side))[0].float().numpy()


# -- 1. ratings within the training ratings' range ----------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_every_rating_the_facade_returns_is_within_the_training_range(
    name: str, saved: dict[str, Path]
) -> None:
    rec = Recommender.load(saved[name])
    caps = type(rec.model).capabilities()
    span = rec.trained.rating_range()
    assert span == (1.0, 5.0)
    users, items = trained_pairs(rec)
    if not caps.ratings:  # a ranking family: no stars at all, refused for every way in
        assert rec.model.score_kind == "score" and rec.recommend(users[0], 5).score_kind == "score"
        for call in (
            lambda: rec.predict(users[:1], items[:1]),
            lambda: rec.predict_details(users[:1], items[:1]),
        ):
            with pytest.raises(CollabkitError, match="does not predict ratings") as refused:
                call()
            text = str(refused.value)
            assert "`collabkit recommend`" in text and "`Recommender.recommend`" in text
            assert "recommend()" not in text and len(text.splitlines()) == 1
        if caps.fold_in:
            with pytest.raises(CollabkitError, match="does not predict ratings"):
                rec.predict_new(eager_fan(rec), items[:1])
        return
    lo, hi = span

    def within(values: Any) -> None:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        assert len(v) and v.min() >= lo and v.max() <= hi, (name, v.min(), v.max())

    within(rec.predict(users, items))
    within(rec.predict_details(users, items)["rating"])
    within(rec.recommend(users[0], 10, min_count=1).scores)
    within(rec.recommend_many(sorted(set(users)), 10, min_count=1).scores)
    if caps.fold_in:
        new = eager_fan(rec)
        own = own_ratings(rec, new)
        every = list(rec.items.items[1:])
        predicted = rec.predict_new(new, every)
        within(predicted)
        assert predicted == pytest.approx(np.clip(own[1:], lo, hi), abs=1e-5)  # clipped, nothing else
        within(rec.recommend_for_ratings(new, 10, min_count=1).scores)
        within(rec.popular(10, min_count=1).scores)
    within(rec.recommend_many(sorted(set(users)), 10, min_count=1, popularity_penalty=1.0).model_scores)


def test_the_clip_is_exercised_a_model_s_own_output_passes_the_scale(saved: dict[str, Path]) -> None:
    """Some rating family's own output for the eager fan passes 5 (the dot models' y_range is 0 to
    5.5), so the test above checks a real clip; the command shows the clipped value."""
    past = {}
    for name in FAMILIES:
        rec = Recommender.load(saved[name])
        if rec.capabilities.ratings and rec.capabilities.fold_in:
            past[name] = float(own_ratings(rec, eager_fan(rec))[1:].max())
    over = [name for name, top in past.items() if top > 5.0]
    assert over, past
    rec = Recommender.load(saved[over[0]])
    top = rec.popular(8, min_count=1).items
    rates = [x for item in top for x in ("--rate", f"{item}=5")]
    result = runner.invoke(
        app, ["recommend", str(saved[over[0]]), *rates, "--strength", "0.05", "--min-count", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    scores = [r["score"] for r in json.loads(result.stdout)["recommendations"]]
    assert scores and max(scores) <= 5.0 and scores == sorted(scores, reverse=True)


def test_the_service_answers_clipped_ratings(saved: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from collabkit.service import create_app

    rec = Recommender.load(saved["dotbias"])
    users, items = trained_pairs(rec)
    with TestClient(create_app(rec)) as client:
        for u, i in list(zip(users, items, strict=True))[::97]:
            r = client.get("/predict", params={"user": str(u), "item": str(i)})
            assert r.status_code == 200 and 1.0 <= r.json()["rating"] <= 5.0
        body = {"ratings": {str(i): 5 for i in rec.popular(8, min_count=1).items}, "n": 10, "min_count": 1}
        res = client.post("/recommend", json=body).json()
        assert res["recommendations"] and all(1.0 <= r["rating"] <= 5.0 for r in res["recommendations"])


def test_a_ranking_model_s_refusal_in_the_command_names_the_command(saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved["ials"])
    users, items = trained_pairs(rec)
    result = runner.invoke(
        app, ["predict", str(saved["ials"]), "--user", str(users[0]), "--item", str(items[0])]
    )
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "`collabkit recommend`" in err[0] and "recommend()" not in err[0], result.stderr


# -- 2. the listed scores are what ordered the list ----------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_with_a_popularity_penalty_the_listed_scores_ordered_the_list(
    name: str, saved: dict[str, Path]
) -> None:
    rec = Recommender.load(saved[name])
    users = sorted({rec.users[int(u)] for u in np.flatnonzero(rec.user_counts.numpy() > 0)})
    batch = rec.recommend_many(users, 10, min_count=1, popularity_penalty=1.0)
    assert batch.model_scores is not None and batch.model_scores.shape == batch.scores.shape
    for row in range(len(batch)):
        s = batch.scores[row][batch.item_idx[row] >= 0]
        assert (np.diff(s) <= 1e-6).all(), (name, s)  # the listed order is sorted by the listed score
    assert not np.allclose(batch.scores, batch.model_scores, equal_nan=True)  # the penalty moved them
    one = rec.recommend(users[0], 10, min_count=1, popularity_penalty=1.0)
    assert list(one.items) == list(batch[0].items) and one.model_scores is not None
    # model_score is the model's own score of each item: what the unpenalised list gives it
    plain = rec.recommend(users[0], len(rec.items), min_count=1)
    assert plain.model_scores is None
    own = dict(zip(plain.items, plain.scores.tolist(), strict=True))
    assert one.model_scores.tolist() == pytest.approx([own[i] for i in one.items], abs=1e-5)
    records = one.to_records()
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    assert all("model_score" in r for r in records) and "model_score" not in plain.to_records()[0]
    assert list(one.to_frame().columns) == ["rank", "item", "title", "score", "model_score"]
    assert "model_score" in batch.to_frame().columns


def test_the_command_s_table_and_json_are_sorted_by_the_listed_score(saved: dict[str, Path]) -> None:
    folder = str(saved["dotbias"])
    rec = Recommender.load(folder)
    user = str(rec.users[int(np.argmax(rec.user_counts.numpy()))])
    args = ["recommend", folder, "--user", user, "-n", "8", "--min-count", "1", "--popularity-penalty", "1"]
    res = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    scores = [r["score"] for r in res["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all("model_score" in r for r in res["recommendations"]) and "ordered_by" in res
    assert [r["model_score"] for r in res["recommendations"]] != scores
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "ordered by score" in lines[1] and lines[2].split()[:3] == ["rank", "score", "rating"]
    shown = [float(line.split()[1]) for line in lines[3:]]
    assert len(shown) == 8 and shown == sorted(shown, reverse=True)


# -- 3. neighbours and answers need MIN_COUNT ratings, and say so ---------------------------------


def test_min_count_keeps_rarely_rated_items_out_by_default() -> None:
    assert 5 <= MIN_COUNT <= 20  # one-rating items are noise; a MovieLens-sized catalogue keeps most items


def test_similar_items_default_leaves_out_rare_items_everywhere(saved: dict[str, Path]) -> None:
    rec = Recommender.load(saved["dotbias"])
    counts = rec.item_counts.numpy()
    rare = set(RARE)
    assert all(counts[rec.items.o2i[i]] == k for i, k in RARE.items())
    query = rec.items[int(np.argmax(counts))]
    near = rec.similar_items(query, len(rec.items))
    assert near.items and not rare & set(near.items)
    assert all(counts[rec.items.o2i[i]] >= MIN_COUNT for i in near.items)
    assert rare <= set(rec.similar_items(query, len(rec.items), min_count=1).items)  # 1: every item
    assert not rare & set(similar_items_table(rec.trained, query, len(rec.items))["item"])
    assert not rare & set(rec.recommend(10, len(rec.items)).items)  # user 10 rated none of them


def test_the_similar_command_shows_each_neighbour_s_rating_count(saved: dict[str, Path]) -> None:
    folder = str(saved["dotbias"])
    rec = Recommender.load(folder)
    counts = rec.item_counts.numpy()
    query = str(rec.items[int(np.argmax(counts))])
    res = json.loads(runner.invoke(app, ["similar", folder, query, "-n", "50", "--json"]).stdout)
    assert res["min_count"] == MIN_COUNT and res["similar_items"]
    for row in res["similar_items"]:
        assert row["n_ratings"] == counts[rec.items.o2i[row["item"]]] >= MIN_COUNT
    text = runner.invoke(app, ["similar", folder, query, "-n", "3"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert f"items with at least {MIN_COUNT} training ratings" in lines[0]
    assert lines[1].split()[:3] == ["rank", "cosine", "ratings"]
    for line, row in zip(lines[2:], res["similar_items"][:3], strict=True):
        assert int(line.split()[2]) == row["n_ratings"]
    plain = runner.invoke(app, ["recommend", folder, "--user", "1", "-n", "3"])
    assert f"items with at least {MIN_COUNT} training ratings" in plain.stdout.splitlines()[0]


@pytest.fixture(scope="module")
def client(saved: dict[str, Path]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from collabkit.service import create_app

    with TestClient(create_app(Recommender.load(saved["dotbias"]))) as c:
        yield c


def test_the_service_s_neighbours_and_lists_need_min_count_ratings(
    client: Any, saved: dict[str, Path]
) -> None:
    rec = Recommender.load(saved["dotbias"])
    counts = rec.item_counts.numpy()
    query = str(rec.items[int(np.argmax(counts))])
    res = client.get("/similar", params={"item": query, "n": 50}).json()
    assert res["min_count"] == MIN_COUNT and res["similar_items"]
    assert all(r["n_ratings"] >= MIN_COUNT for r in res["similar_items"])
    assert client.get("/catalogue").json()["min_count"] == MIN_COUNT
    every = client.get("/similar", params={"item": query, "n": 50, "min_count": 1}).json()
    assert set(RARE) <= {r["item"] for r in every["similar_items"]}
    body = {"ratings": {query: 5}, "n": 50}
    assert not set(RARE) & {r["item"] for r in client.post("/recommend", json=body).json()["recommendations"]}
    body["min_count"] = 1  # 1 means every trained item, not the default
    listed = {r["item"] for r in client.post("/recommend", json=body).json()["recommendations"]}
    profile = client.get("/profile", params={"user": "10", "n": 50, "min_count": 1}).json()
    assert set(RARE) & (listed | {r["item"] for r in profile["recommendations"]})
