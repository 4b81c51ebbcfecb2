"""Interpretation: biases, the embedding map, neighbours and explained predictions on models whose
answers are known (fixed weights), the report and the command on a small trained model, and the
chapter's findings on the real ML-100k (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit import CollabDataLoaders, CollabkitError, UnknownIdError, collab_learner, set_seed
from collabkit.bundle import TrainedModel
from collabkit.cli import app
from collabkit.data.vocab import Vocab
from collabkit.interpret import (
    embedding_map,
    explain_prediction,
    interpret_model,
    item_biases,
    item_title,
    plot_embedding_map,
    similar_items_table,
    similar_users_table,
    user_biases,
)
from collabkit.models import ModelConfig, build_model, predict_ratings
from collabkit.models.core import pca
from collabkit.persist import load_model
from collabkit.recommend import Recommender
from collabkit.recommend.engine import cosine_neighbours
from collabkit.report import write_report

runner = CliRunner()

TITLES = {10: "Alpha", 20: "Beta", 30: "Gamma", 40: "Delta", 50: "Epsilon", 60: "Zeta"}
# Item factors by row (row 0 is #na#): Delta points exactly the way Alpha does, twice as long;
# #na# points that way too, and must still never be returned.
ITEM_FACTORS = [
    [1.0, 0.0, 0.0],  # #na#
    [1.0, 0.2, 0.0],  # 10 Alpha
    [-1.0, 0.1, 0.3],  # 20 Beta
    [0.1, 1.0, -0.2],  # 30 Gamma
    [2.0, 0.4, 0.0],  # 40 Delta
    [-0.5, -1.0, 0.4],  # 50 Epsilon
    [0.3, -0.2, 1.0],  # 60 Zeta
]
USER_FACTORS = [[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [1.0, -0.6, 0.4], [-0.4, 0.9, 0.1]]
ITEM_BIAS = [0.0, 0.1, -0.8, 0.9, 0.2, 0.0, -0.1]  # Gamma highest, Beta lowest
USER_BIAS = [0.0, 0.3, -0.5, 0.1]


def known_model(model: str = "dotbias", gamma_ratings: int = 3) -> TrainedModel:
    """3 users x 6 items with fixed weights; Gamma (30) rated `gamma_ratings` times, others 3 times."""
    factors = {"n_factors": 3} if model in ("dot", "dotbias") else {}  # the deep model takes none
    config = ModelConfig(model, n_users=4, n_items=7, y_range=(0.0, 5.5), **factors)
    net = build_model(config)
    with torch.no_grad():
        if model == "dotbias":
            net.u_weight.weight.copy_(torch.tensor(USER_FACTORS))
            net.i_weight.weight.copy_(torch.tensor(ITEM_FACTORS))
            net.u_bias.weight.copy_(torch.tensor(USER_BIAS)[:, None])
            net.i_bias.weight.copy_(torch.tensor(ITEM_BIAS)[:, None])
        elif model == "dot":
            net.user_factors.weight.copy_(torch.tensor(USER_FACTORS))
            net.item_factors.weight.copy_(torch.tensor(ITEM_FACTORS))
    pairs = [(u, i) for u in (1, 2, 3) for i in range(1, 7) if not (i == 3 and u > gamma_ratings)]
    x = torch.tensor(pairs, dtype=torch.int64)
    y = torch.tensor([float(1 + (u + i) % 5) for u, i in pairs])
    users = Vocab(["u1", "u2", "u3"], name="user")
    items = Vocab(list(TITLES), name="item")
    return TrainedModel(net.eval(), config, users, items, x, y, dict(TITLES))


# -- biases -------------------------------------------------------------------------------------


def test_item_biases_put_the_set_extremes_first() -> None:
    saved = known_model()
    table = item_biases(saved, n=2, min_count=1)
    highest = table[table["side"] == "highest"]
    lowest = table[table["side"] == "lowest"]
    assert highest["title"].tolist() == ["Gamma", "Delta"]
    assert lowest["title"].tolist() == ["Beta", "Zeta"]
    assert highest["bias"].iloc[0] == pytest.approx(0.9)
    gamma = highest.iloc[0]
    mean = float(saved.train_y[saved.train_x[:, 1] == 3].mean())
    assert gamma["n_ratings"] == 3 and gamma["mean_rating"] == pytest.approx(mean)
    assert "#na#" not in table["item"].tolist()


def test_min_count_leaves_out_rarely_rated_items() -> None:
    saved = known_model(gamma_ratings=1)
    assert item_biases(saved, n=1, min_count=1)["title"].tolist() == ["Beta", "Gamma"]
    assert item_biases(saved, n=1, min_count=2)["title"].tolist() == ["Beta", "Delta"]
    with pytest.raises(CollabkitError, match="no item has at least 99 training ratings"):
        item_biases(saved, min_count=99)


def test_user_biases() -> None:
    table = user_biases(known_model(), n=1, min_count=1)
    assert table["user"].tolist() == ["u2", "u1"]
    assert table["bias"].tolist() == pytest.approx([-0.5, 0.3])


@pytest.mark.parametrize("model", ["dot", "nn"])
def test_models_without_biases_say_so(model: str) -> None:
    with pytest.raises(CollabkitError, match=f"model '{model}' has no item biases"):
        item_biases(known_model(model))


# -- neighbours ---------------------------------------------------------------------------------


def test_nearest_item_is_the_one_with_the_same_direction() -> None:
    saved = known_model()
    for query in ("Alpha", 10, "10"):
        table = similar_items_table(saved, query, n=10, min_count=1)
        assert table["title"].iloc[0] == "Delta"
        assert table["similarity"].iloc[0] == pytest.approx(1.0)
        assert "Alpha" not in table["title"].tolist() and "#na#" not in table["item"].tolist()
        assert len(table) == 5 and table["similarity"].is_monotonic_decreasing
    assert table.attrs["query_title"] == "Alpha"
    with pytest.raises(UnknownIdError, match="'Omega' is not an id or title"):
        similar_items_table(saved, "Omega")


def test_cosine_neighbours_respects_the_mask() -> None:
    factors = torch.tensor(ITEM_FACTORS)
    mask = torch.ones(len(factors), dtype=torch.bool)
    mask[4] = False  # Delta
    mask[0] = False  # '#na#': the tables built here always leave it out
    idx, sims = cosine_neighbours(factors, [1], n=2, candidates=mask)
    assert 4 not in idx.tolist() and 0 not in idx.tolist() and 1 not in idx.tolist()
    assert len(idx) == 2 and sims[0] >= sims[1]


def test_similar_users() -> None:
    table = similar_users_table(known_model(), "u1", n=2, min_count=1)
    assert table["user"].tolist() == ["u2", "u3"]  # u2's factors are u1's, doubled
    assert table["similarity"].iloc[0] == pytest.approx(1.0)


# -- explained predictions ----------------------------------------------------------------------


def test_an_offset_is_named_only_where_the_model_has_none(tmp_path: Path) -> None:
    from collabkit.workflows import TrainConfig, train
    from tests.conftest import make_ratings

    table = make_ratings(n=600)
    train(table, TrainConfig(model="als"), log=None, out=tmp_path / "als")
    ex = explain_prediction(load_model(tmp_path / "als"), 1, 100)
    first = ex.parts().iloc[0]
    assert first["part"] == "offset" and first["value"] == pytest.approx(ex.offset)
    assert ex.offset != 0.0  # als predicts around the training mean
    plain = explain_prediction(known_model("dot"), "u2", "Gamma").parts().iloc[0]
    assert plain["part"] == "offset (none in this model)" and plain["value"] == 0.0


@pytest.mark.parametrize("model", ["dotbias", "dot"])
def test_explained_prediction_adds_up_to_the_models_rating(model: str) -> None:
    saved = known_model(model)
    ex = explain_prediction(saved, "u2", "Gamma")
    parts = ex.parts()
    assert parts["value"].sum() == pytest.approx(ex.raw, abs=1e-12)
    assert ex.parts(top=1)["value"].sum() == pytest.approx(ex.raw, abs=1e-12)
    u, i = np.array(USER_FACTORS[2]), np.array(ITEM_FACTORS[3])
    biases = USER_BIAS[2] + ITEM_BIAS[3] if model == "dotbias" else 0.0
    assert ex.raw == pytest.approx(float(u @ i) + biases, abs=1e-6)
    np.testing.assert_allclose(ex.factor_products, u * i, atol=1e-7)
    assert ex.offset == 0.0 and ex.actual == 1.0  # u2 rated Gamma 1 + (2 + 3) % 5
    model_says = predict_ratings(saved.model, torch.tensor([[2, 3]]))[0].item()
    assert ex.rating == model_says
    assert ex.rating == pytest.approx(1 / (1 + np.exp(-ex.raw)) * 5.5, abs=1e-6)
    assert json.loads(json.dumps(ex.to_dict()))["title"] == "Gamma"


def test_deep_models_have_no_additive_explanation() -> None:
    with pytest.raises(CollabkitError, match="model 'nn' has no additive explanation"):
        explain_prediction(known_model("nn"), "u1", "Alpha")


# -- the embedding map --------------------------------------------------------------------------


def test_embedding_map_is_pca_of_the_item_factors(tmp_path: Path) -> None:
    saved = known_model()
    emap = embedding_map(saved, k=2, n_ends=1, min_count=1)
    x = torch.tensor(ITEM_FACTORS[1:])  # every item is rated equally, so all six are mapped
    expected = pca(x, 2).numpy()
    got = emap.scores.sort_values("item")[["pc1", "pc2"]].to_numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(expected), atol=1e-5)  # signs are arbitrary
    shares = emap.components["variance_share"].tolist()
    assert shares[0] >= shares[1] > 0 and sum(shares) <= 1 + 1e-9
    low, high = emap.components.loc[0, "low_end"], emap.components.loc[0, "high_end"]
    pc1 = emap.scores.set_index("title")["pc1"]
    assert low == [pc1.idxmin()] and high == [pc1.idxmax()]
    png, svg = plot_embedding_map(emap, tmp_path / "map")
    assert png.read_bytes()[:4] == b"\x89PNG" and "<svg" in svg.read_text()
    with pytest.raises(CollabkitError, match="k must be between 1 and 3"):
        embedding_map(saved, k=4, min_count=1)


# -- the report and the command on a small trained model ----------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_ratings

    ratings = make_ratings()
    ratings["title"] = [f"Film {i} <&>" for i in ratings["item"]]  # text that must be escaped
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=0)
    learn = collab_learner(dls, n_factors=8, y_range=(0, 5.5), log=None)
    learn.fit_one_cycle(3, 1e-2, wd=0.01)
    return Path(learn.export(str(tmp_path_factory.mktemp("models") / "dotbias")))


def test_report_is_one_self_contained_page(trained: Path, tmp_path: Path) -> None:
    saved = load_model(trained)
    files = write_report(saved, tmp_path / "r", n=3, items=["Film 105 <&>"], source=trained)
    page = files.html.read_text(encoding="utf-8")
    assert files.png is not None and files.png.exists() and files.svg is not None and files.svg.exists()
    assert "Film 105 &lt;&amp;&gt;" in page and "<&>" not in page
    assert "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for heading in ("Biases", "The embedding map", "Neighbours", "One prediction, explained"):
        assert heading in page


def test_command_writes_the_report_and_prints_json(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = ["interpret", str(trained), "--out", str(out), "-n", "3", "--item", "105", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert Path(doc["report"]["html"]) == out / "report.html" and (out / "report.html").exists()
    assert len(doc["item_biases"]["highest"]) == 3 and len(doc["user_biases"]["lowest"]) == 3
    shares = [c["variance_share"] for c in doc["embedding"]["components"]]
    assert len(shares) == 3 and shares == sorted(shares, reverse=True)
    assert list(doc["neighbours"]) == ["Film 105 <&>"] and len(doc["neighbours"]["Film 105 <&>"]) == 10
    ex = doc["example"]
    assert ex["offset"] + ex["user_bias"] + ex["item_bias"] + sum(ex["factor_products"]) == pytest.approx(
        ex["raw"]
    )


def test_command_prints_tables_and_defaults_to_the_model_folder(trained: Path) -> None:
    result = runner.invoke(app, ["interpret", str(trained), "-n", "2", "--min-count", "5"])
    assert result.exit_code == 0, result.output
    for text in ("lowest item biases", "highest user biases", "embedding map", "nearest to Film"):
        assert text in result.stdout
    assert (trained / "report" / "report.html").exists()


def test_command_errors_are_one_line(tmp_path: Path, trained: Path) -> None:
    result = runner.invoke(app, ["interpret", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no model folder here" in result.output
    result = runner.invoke(app, ["interpret", str(trained), "--item", "Omega"])
    assert result.exit_code == 2 and "'Omega' is not an id or title" in result.output
    assert "Traceback" not in result.output


def test_report_for_a_model_without_biases(tmp_path: Path) -> None:
    saved = known_model("nn")
    result = interpret_model(saved, n=2)
    assert result.item_biases is None and result.example is None
    assert any("has no item biases" in note for note in result.notes)
    files = write_report(saved, tmp_path, interpretation=result)
    assert "no additive explanation" in files.html.read_text(encoding="utf-8")


# -- computed once, and a Recommender as good as its TrainedModel -------------------------------


def test_every_function_takes_a_recommender_as_well_as_its_trained_model(tmp_path: Path) -> None:
    saved = known_model()
    rec = Recommender(saved)
    for a, b in (
        (item_biases(saved, n=2, min_count=1), item_biases(rec, n=2, min_count=1)),
        (user_biases(saved, n=1, min_count=1), user_biases(rec, n=1, min_count=1)),
        (embedding_map(saved, k=2, min_count=1).scores, embedding_map(rec, k=2, min_count=1).scores),
        (similar_items_table(saved, "Alpha", min_count=1), similar_items_table(rec, "Alpha", min_count=1)),
        (
            similar_users_table(saved, "u1", n=2, min_count=1),
            similar_users_table(rec, "u1", n=2, min_count=1),
        ),
        (explain_prediction(saved, "u2", "Gamma").parts(), explain_prediction(rec, "u2", "Gamma").parts()),
    ):
        pd.testing.assert_frame_equal(a, b)
    assert item_title(rec, 30) == "Gamma"
    it = interpret_model(rec, n=2, min_count=1)
    assert it.example is not None
    assert it.example.to_dict() == interpret_model(saved, n=2, min_count=1).example.to_dict()
    assert it.min_count == 1 and it.to_dict()["min_count"] == 1
    assert write_report(rec, tmp_path, n=2, min_count=1).html.exists()
    lowered = interpret_model(rec, n=2)  # the default MIN_COUNT: this table's items have 3 each
    assert lowered.item_min_count == 3 and "no item has 10 training ratings" in lowered.fallbacks[0]
    with pytest.raises(CollabkitError, match="expected a TrainedModel or a Recommender, got str"):
        item_biases("runs/dotbias")  # type: ignore[arg-type]


class _Untouchable:
    """Stands in for the training rows once the caches are built: any use of them fails."""

    def __getitem__(self, key: object) -> None:
        raise AssertionError("the training rows were scanned again")

    def __len__(self) -> int:
        raise AssertionError("the training rows were scanned again")


def test_queries_use_what_was_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import collabkit.data.resolver as resolver
    import collabkit.recommend.recommender as recommender

    saved = known_model()
    first = explain_prediction(saved, "u2", "Gamma")  # builds the caches
    similar_items_table(saved, "Alpha", min_count=1)
    similar_users_table(saved, "u1", min_count=1)
    built = []
    original = resolver.IdResolver.__init__

    def counting(self: object, *args: object, **kwargs: object) -> None:
        built.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError("a Recommender was built for one query")

    monkeypatch.setattr(resolver.IdResolver, "__init__", counting)
    monkeypatch.setattr(recommender.Recommender, "__init__", refuse)
    saved.train_x, saved.train_y = _Untouchable(), _Untouchable()  # type: ignore[assignment]
    again = explain_prediction(saved, "u2", "Gamma")
    assert again.actual == first.actual == 1.0 and again.rating == first.rating
    assert explain_prediction(saved, "u3", "Gamma").actual == 2.0  # 1 + (3 + 3) % 5, from u3's CSR row
    assert similar_items_table(saved, "Alpha", min_count=1)["title"].iloc[0] == "Delta"
    assert similar_users_table(saved, "u1", min_count=1)["user"].iloc[0] == "u2"
    assert built == []  # no resolver rebuilt per call


def test_a_ranking_model_report_says_what_it_lacks_and_shows_no_nan(
    ratings: pd.DataFrame, tmp_path: Path
) -> None:
    from collabkit.workflows import TrainConfig, train

    train(ratings, TrainConfig(model="popular"), out=tmp_path / "popular", log=None)
    saved = load_model(tmp_path / "popular")
    with pytest.raises(CollabkitError, match="model 'popular' has no item biases"):
        item_biases(saved)
    with pytest.raises(CollabkitError, match="model 'popular' has no item vectors"):
        embedding_map(saved)
    result = interpret_model(saved)
    assert result.item_biases is None and result.embedding is None and result.neighbours == {}
    assert result.capabilities == type(saved.model).capabilities() and result.score_kind == "score"
    assert any("it ranks items by a score; it does not predict ratings" in note for note in result.notes)
    page = write_report(saved, tmp_path / "r", interpretation=result).html.read_text(encoding="utf-8")
    assert "model &#x27;popular&#x27; has no biases in rating units" in page
    assert "no additive explanation: its score does not split" in page and "non-linearly" not in page
    text = page.split("<body>", 1)[1]
    assert "nan" not in text.lower().replace("nan-", "")  # no NaN (the PNG, if any, is base64 in src)
    biases = text.split("<h2>Biases</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<table" not in biases and "<h3>" not in biases  # no empty bias card
    assert "ranking scores (larger is better), not ratings" in page


# -- the chapter's findings on ML-100k ----------------------------------------------------------


@pytest.mark.slow
def test_chapter_findings_on_ml100k(ml100k: pd.DataFrame, tmp_path: Path) -> None:
    from collabkit.workflows import TrainConfig, train

    train(ml100k, TrainConfig(), data_name="ml-100k", out=tmp_path / "dotbias", log=None)
    saved = load_model(tmp_path / "dotbias")
    star_wars = similar_items_table(saved, "Star Wars (1977)", n=10, min_count=50)
    assert "Return of the Jedi (1983)" in star_wars["title"].tolist()
    liked = {
        "Titanic (1997)",
        "Schindler's List (1993)",
        "Shawshank Redemption, The (1994)",
        "Star Wars (1977)",
        "Silence of the Lambs, The (1991)",
    }
    top = item_biases(saved, n=10, min_count=50)
    assert liked & set(top[top["side"] == "highest"]["title"])
    emap = embedding_map(saved)
    assert len(emap.scores) == 1000
    assert emap.components["variance_share"].is_monotonic_decreasing
