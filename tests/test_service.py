"""The HTTP service: every endpoint, every error code, the API key rules, `collabkit serve` on a socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():  # starlette suggests httpx2; httpx is what FastAPI documents
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from typer.testing import CliRunner

from collabkit.cli import app as cli_app
from collabkit.recommend import Recommender
from collabkit.recommend.why import closest_rated
from collabkit.service import MAX_BODY_BYTES, MAX_BODY_RATINGS, MAX_RESULTS, create_app
from collabkit.service.deps import search_titles

TWIN = "Twin Film (1990)"  # the title of items 100 and 101: asking by it is ambiguous
GENRES = ["Drama", "Comedy", "Action", "Horror"]


def ratings_table(n_users: int = 70, n_items: int = 45, n: int = 2400, seed: int = 3) -> pd.DataFrame:
    """Ratings 1..5 from hidden factors and biases, with titles (two items share one) and genres."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    users, items = pairs // n_items, pairs % n_items
    uf, itf = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    ib = rng.normal(scale=0.7, size=n_items)
    score = 3 + (uf[users] * itf[items]).sum(1) * 0.6 + ib[items] + rng.normal(scale=0.2, size=n)
    item_ids = items + 100
    titles = [TWIN if i in (100, 101) else f"Film {i} ({1900 + i})" for i in item_ids]
    return pd.DataFrame(
        {
            "user": users + 1,
            "item": item_ids,
            "rating": np.clip(np.round(score), 1, 5).astype("float32"),
            "timestamp": rng.integers(800_000_000, 900_000_000, size=n),
            "title": titles,
            "genres": [
                f"{GENRES[i % 4]}|{GENRES[(i // 4) % 4]}" if i % 5 else GENRES[i % 4] for i in item_ids
            ],
        }
    )


def train_tiny_model(folder: Path) -> tuple[Path, pd.DataFrame]:
    """A dotbias model of `ratings_table`, trained through the command in a few seconds."""
    table = ratings_table()
    csv = folder / "ratings.csv"
    table.to_csv(csv, index=False)
    out = folder / "model"
    args = [
        "train",
        "--data",
        str(csv),
        "--model",
        "dotbias",
        "--recipe",
        "chapter",  # the fast recipe may keep its biases-only start on so small a table: no factors
        "--epochs",
        "3",
        "--bs",
        "64",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli_app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    return out, table


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    return train_tiny_model(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="module")
def rec(model: tuple[Path, pd.DataFrame]) -> Recommender:
    return Recommender.load(model[0])


@pytest.fixture(scope="module")
def genres(model: tuple[Path, pd.DataFrame]) -> dict[Any, str]:
    table = model[1].drop_duplicates("item")
    return dict(zip(table["item"].tolist(), table["genres"].tolist(), strict=True))


@pytest.fixture(scope="module")
def client(rec: Recommender, genres: dict[Any, str]) -> Iterator[TestClient]:
    with TestClient(create_app(rec, genres=genres)) as c:
        yield c


@pytest.fixture(scope="module")
def keyed(rec: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(rec, api_key="s3cret")) as c:
        yield c


def known_user(rec: Recommender) -> Any:
    counts = rec.trained.user_counts
    return rec.users[int(np.argmax(counts.numpy()))]


def seen_items(rec: Recommender, user: Any) -> set[Any]:
    b = rec.trained
    x = b.train_x.numpy()
    u = int(rec.users.encode([user])[0])
    return {rec.items[int(i)] for i in x[x[:, 0] == u, 1]}


# -- the endpoints --------------------------------------------------------------------------------


def test_health_names_the_model_and_its_catalogue(client: TestClient, rec: Recommender) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"] == "dotbias"
    assert body["n_items"] == int((rec.trained.item_counts[1:] > 0).sum()) == 45
    assert body["n_users"] == 70


def test_recommend_known_user_lists_unseen_items_best_first(client: TestClient, rec: Recommender) -> None:
    user = known_user(rec)
    r = client.get("/recommend", params={"user": str(user), "n": 7})
    assert r.status_code == 200
    recs = r.json()["recommendations"]
    assert len(recs) == 7 and r.json()["user"] == user
    assert [x["rating"] for x in recs] == sorted((x["rating"] for x in recs), reverse=True)
    assert not {x["item"] for x in recs} & seen_items(rec, user)
    direct = rec.recommend(user, 7)
    assert [x["item"] for x in recs] == list(direct.items)
    assert [x["title"] for x in recs] == list(direct.titles)
    np.testing.assert_allclose([x["rating"] for x in recs], direct.scores, rtol=1e-6)


def test_recommend_for_new_ratings_by_title_and_id(client: TestClient, rec: Recommender) -> None:
    ratings = {"Film 110 (2010)": 5, "111": 1, "Film 112 (2012)": 4}
    r = client.post("/recommend", json={"ratings": ratings, "n": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {x["item"] for x in body["ratings"]} == {110, 111, 112}
    recs = body["recommendations"]
    assert len(recs) == 6 and not {x["item"] for x in recs} & {110, 111, 112}
    # ordered by the ranking model fitted beside this rating model, from the liked items (4 and 5 of 1-5);
    # the ratings shown are the rating model's predicted stars
    ranker = client.app.state.service.ranker  # type: ignore[attr-defined]
    assert body["ranked_by"] == ranker.name == "easeknn" and body["stars_by"] == "dotbias"
    direct = ranker.rec.recommend_for_ratings({110: 5, 112: 4}, 6, exclude=[110, 111, 112])
    assert [x["item"] for x in recs] == list(direct.items)
    stars = rec.predict_new(rec.fold_in({110: 5, 111: 1, 112: 4}), [x["item"] for x in recs])
    np.testing.assert_allclose([x["rating"] for x in recs], stars, rtol=1e-5)
    assert all(x["why"]["text"].startswith("because you liked Film 11") for x in recs)
    for x in recs:  # each with its bias and the two rated items nearest to it
        assert isinstance(x["why"]["bias"], float)
        closest = x["why"]["closest"]
        assert len(closest) == 2 and {c["item"] for c in closest} <= {110, 111, 112}
        assert closest[0]["similarity"] >= closest[1]["similarity"]
        assert {c["your_rating"] for c in closest} <= {5.0, 1.0, 4.0}


def test_recommendations_change_with_the_ratings(client: TestClient) -> None:
    a = client.post("/recommend", json={"ratings": {"110": 5}, "n": 10}).json()["recommendations"]
    b = client.post("/recommend", json={"ratings": {"110": 1, "120": 5}, "n": 10}).json()["recommendations"]
    assert [x["item"] for x in a] != [x["item"] for x in b]
    empty = client.post("/recommend", json={"ratings": {}}).json()  # no ratings: the popular list
    assert len(empty["recommendations"]) == 10 and empty["ratings"] == []


def test_similar_by_title_and_by_id(client: TestClient, rec: Recommender) -> None:
    by_title = client.get("/similar", params={"item": "film 110 (2010)", "n": 4})
    by_id = client.get("/similar", params={"item": "110", "n": 4})
    assert by_title.status_code == by_id.status_code == 200
    assert by_title.json() == by_id.json()
    near = by_id.json()["similar_items"]
    assert len(near) == 4 and 110 not in {x["item"] for x in near}
    assert [x["score"] for x in near] == sorted((x["score"] for x in near), reverse=True)
    direct = rec.similar_items(110, 4)
    assert [x["item"] for x in near] == list(direct.items)
    counts = rec.trained.item_counts
    assert all(x["n_ratings"] == int(counts[rec.items.encode([x["item"]])[0]]) for x in near)
    most = client.get("/similar", params={"item": "110", "n": 40, "min_count": 60}).json()["similar_items"]
    assert all(x["n_ratings"] >= 60 for x in most) and len(most) < 40


def test_predict_matches_the_library(client: TestClient, rec: Recommender) -> None:
    user = known_user(rec)
    r = client.get("/predict", params={"user": str(user), "item": "Film 120 (2020)"})
    assert r.status_code == 200
    assert r.json()["item"] == 120 and r.json()["title"] == "Film 120 (2020)"
    assert r.json()["rating"] == pytest.approx(float(rec.predict(users=[user], items=[120])[0]), rel=1e-6)


def test_items_search_is_case_insensitive_substring_most_rated_first(
    client: TestClient, rec: Recommender
) -> None:
    r = client.get("/items", params={"q": "FILM 11", "limit": 20})
    assert r.status_code == 200
    items = r.json()["items"]
    assert {x["item"] for x in items} == set(range(110, 120)) and r.json()["total"] == 10
    counts = [x["n_ratings"] for x in items]
    assert counts == sorted(counts, reverse=True) and all(c > 0 for c in counts)
    assert all(1 <= x["mean_rating"] <= 5 for x in items)
    assert len(client.get("/items", params={"q": "", "limit": 5}).json()["items"]) == 5
    assert client.get("/items", params={"q": "no such film"}).json() == {
        "q": "no such film",
        "total": 0,
        "items": [],
    }


def test_explain_parts_add_up_to_the_prediction(client: TestClient, rec: Recommender) -> None:
    user = known_user(rec)
    e = client.get("/explain", params={"user": str(user), "item": "120", "top": 3}).json()
    assert e["offset"] + e["user_bias"] + e["item_bias"] + e["dot"] == pytest.approx(e["raw"], abs=1e-5)
    assert sum(f["value"] for f in e["top_factors"]) + e["other_factors"] == pytest.approx(e["dot"], abs=1e-5)
    assert len(e["top_factors"]) == 3
    sizes = [abs(f["value"]) for f in e["top_factors"]]
    assert sizes == sorted(sizes, reverse=True)
    p = client.get("/predict", params={"user": str(user), "item": "120"}).json()
    assert e["rating"] == pytest.approx(p["rating"], abs=1e-5)


def test_map_points_have_titles_counts_and_genres(client: TestClient) -> None:
    r = client.get("/map")
    assert r.status_code == 200
    body = r.json()
    assert len(body["points"]) == 45 and len(body["axes"]) == 2
    by_item = {p["item"]: p for p in body["points"]}
    assert by_item[105]["genres"] == ["Comedy"] and by_item[107]["genres"] == ["Horror", "Action"]
    assert all(np.isfinite(p["x"]) and np.isfinite(p["y"]) for p in body["points"])
    counts = [p["n_ratings"] for p in body["points"]]
    assert counts == sorted(counts, reverse=True)
    assert set(body["genres"]) == set(GENRES)
    assert client.get("/map").content == r.content


def test_biases_and_model_info(client: TestClient, rec: Recommender) -> None:
    b = client.get("/biases", params={"n": 3, "min_count": 1}).json()
    assert len(b["highest"]) == len(b["lowest"]) == 3
    assert (
        b["highest"][0]["bias"]
        >= b["highest"][-1]["bias"]
        > b["lowest"][-1]["bias"]
        >= b["lowest"][0]["bias"]
    )
    info = client.get("/model").json()
    assert info["model"] == "dotbias" and info["settings"]["n_factors"] == 50
    assert len(info["history"]) == 3 and "valid_loss" in info["history"][0]
    assert info["results"]["settings"]["epochs"] == 3


def test_openapi_docs_and_the_page(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/similar", "/predict", "/items", "/explain", "/map"} <= set(
        spec["paths"]
    )
    assert "post" in spec["paths"]["/recommend"] and "get" in spec["paths"]["/recommend"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page.text and "cdn" not in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("static/app.js", "static/style.css"):
        assert client.get(f"/{asset}").status_code == 200


def test_answers_are_deterministic(rec: Recommender, genres: dict[Any, str]) -> None:
    body = {"ratings": {"110": 5, "Film 130 (2030)": 2}, "n": 10}
    answers = []
    for _ in range(2):  # a fresh app each time: nothing cached may change an answer
        with TestClient(create_app(rec, genres=genres)) as c:
            answers.append([c.get("/recommend?user=5&n=10").content, c.post("/recommend", json=body).content,
                            c.get("/similar?item=110").content, c.get("/map").content])  # fmt: skip
    assert answers[0] == answers[1]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/recommend?user=9999", "user '9999'"),
        ("/similar?item=Nope (1900)", "Nope"),
        ("/similar?item=99999", "99999"),
        ("/predict?user=1&item=Nope", "Nope"),
        ("/predict?user=9999&item=110", "9999"),
        ("/explain?user=9999&item=110", "9999"),
    ],
)
def test_unknown_user_or_item_is_404_with_a_detail(client: TestClient, path: str, word: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert word in r.json()["detail"]


def test_ambiguous_title_is_404_listing_the_candidates(client: TestClient) -> None:
    for r in (
        client.get("/similar", params={"item": TWIN}),
        client.get("/predict", params={"user": "1", "item": TWIN}),
        client.post("/recommend", json={"ratings": {TWIN: 4}}),
    ):
        assert r.status_code == 404
        body = r.json()
        assert "names 2 items" in body["detail"]
        assert sorted(c["item"] for c in body["candidates"]) == [100, 101]
        assert all(c["title"] == TWIN and c["n_ratings"] > 0 for c in body["candidates"])


@pytest.mark.parametrize(
    "path",
    [
        "/recommend?user=1&n=0",
        f"/recommend?user=1&n={MAX_RESULTS + 1}",
        "/recommend?user=1&n=ten",
        "/recommend",
        "/similar?item=110&n=-1",
        "/items?limit=0",
        "/items?limit=100000",
        "/explain?user=1&item=110&top=0",
        "/biases?n=0",
    ],
)
def test_bad_parameters_are_422(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_what_a_deep_model_cannot_answer_is_422_with_the_reason(
    model: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    csv = tmp_path / "ratings.csv"
    model[1].to_csv(csv, index=False)
    args = [
        "train",
        "--data",
        str(csv),
        "--model",
        "nn",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "nn"),
        "-q",
    ]
    assert CliRunner().invoke(cli_app, args).exit_code == 0
    with TestClient(create_app(tmp_path / "nn")) as c:
        explain = c.get("/explain", params={"user": "1", "item": "110"})
        assert explain.status_code == 422 and "no additive explanation" in explain.json()["detail"]
        biases = c.get("/biases")
        assert biases.status_code == 422 and "no item biases" in biases.json()["detail"]
        posted = c.post("/recommend", json={"ratings": {"110": 5}, "n": 3}).json()["recommendations"]
        assert len(posted) == 3 and all(x["why"]["bias"] is None for x in posted)
        assert c.get("/recommend", params={"user": "1", "n": 3}).status_code == 200


def test_bad_bodies_are_422(client: TestClient) -> None:
    out_of_scale = client.post("/recommend", json={"ratings": {"110": 9}})
    assert out_of_scale.status_code == 422 and "outside the model's scale" in out_of_scale.json()["detail"]
    cases = [
        client.post(
            "/recommend", content=b'{"ratings": {"110": 5', headers={"content-type": "application/json"}
        ),
        client.post("/recommend", json={"ratings": {"110": "five"}}),
        client.post("/recommend", json={"ratings": {"110": 5}, "n": 0}),
        client.post("/recommend", json={"ratings": {"110": 5}, "n": MAX_RESULTS + 1}),
        client.post("/recommend", json={"ratings": {"110": 5}, "extra": 1}),
        client.post("/recommend", json={"ratings": [110, 5]}),
        client.post("/recommend", json={"ratings": {str(i): 3 for i in range(MAX_BODY_RATINGS + 1)}}),
    ]
    for r in cases:
        assert r.status_code == 422, r.text
        assert r.json()["detail"]


def test_body_over_the_cap_is_413(client: TestClient) -> None:
    big = json.dumps({"ratings": {"x" * (MAX_BODY_BYTES + 10): 5}}).encode()
    r = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: the cap counts the bytes as they come
        for k in range(0, len(big), 8192):
            yield big[k : k + 8192]

    r = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_the_service_stays_up_after_bad_requests(client: TestClient) -> None:
    for path in ("/recommend?user=x", "/similar?item=", "/predict", "/map?x=1", "/nope"):
        client.get(path)
    client.post("/recommend", content=b"\xff\xfe", headers={"content-type": "application/json"})
    client.post("/recommend", content=b"x" * (MAX_BODY_BYTES + 1))
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/recommend?user=1&n=3").status_code == 200


def test_an_unexpected_failure_is_a_json_500_and_the_service_stays_up(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(rec)
    with TestClient(app, raise_server_exceptions=False) as c:
        monkeypatch.setattr(rec, "recommend", lambda *a, **k: 1 / 0)
        r = c.get("/recommend?user=1")
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["detail"]
        monkeypatch.undo()
        assert c.get("/recommend?user=1").status_code == 200


# -- the API key ----------------------------------------------------------------------------------


def test_api_key_protects_everything_but_health(keyed: TestClient) -> None:
    assert keyed.get("/health").status_code == 200
    for path in ("/recommend?user=1", "/similar?item=110", "/items", "/map", "/openapi.json", "/docs"):
        r = keyed.get(path)
        assert r.status_code == 401, path
        assert "API key" in r.json()["detail"]
    page = keyed.get("/")  # the page answers with its login form (tests/test_service_auth.py)
    assert page.status_code == 401 and 'action="login"' in page.text
    assert keyed.post("/recommend", json={"ratings": {"110": 5}}).status_code == 401
    assert keyed.get("/recommend?user=1", headers={"X-API-Key": "wrong"}).status_code == 401
    assert keyed.get("/recommend?user=1", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert keyed.get("/recommend?user=1", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert keyed.get("/recommend?user=1&api_key=s3cret").status_code == 401  # not in URLs of the API
    assert keyed.get("/?api_key=s3cret").status_code == 401  # nor of the page


def test_api_key_from_the_environment(model: tuple[Path, pd.DataFrame]) -> None:
    from collabkit.cli.serve import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    runner = CliRunner()
    refused = runner.invoke(
        cli_app, ["serve", str(model[0]), "--host", "0.0.0.0"], env={"COLLABKIT_API_KEY": ""}
    )
    assert refused.exit_code == 2 and "--api-key" in refused.output
    for bad in (["--workers", "0"], ["--threads", "0"], ["--port", "70000"]):
        result = runner.invoke(cli_app, ["serve", str(model[0]), *bad])
        assert result.exit_code == 2 and bad[0] in result.output


def test_genres_from_a_file(tmp_path: Path, model: tuple[Path, pd.DataFrame]) -> None:
    from collabkit.cli.serve import load_genres

    path = tmp_path / "genres.csv"
    model[1][["item", "genres"]].drop_duplicates("item").to_csv(path, index=False)
    genres, note = load_genres(str(path), None)
    assert genres[105] == "Comedy" and len(genres) == 45 and "45 items" in note
    assert load_genres("auto", "ratings.csv")[0] == {}
    (tmp_path / "bad.csv").write_text("item,kind\n1,x\n")
    from collabkit.errors import CollabkitError

    with pytest.raises(CollabkitError, match="genres"):
        load_genres(str(tmp_path / "bad.csv"), None)
    (tmp_path / "short.csv").write_text("item,genres\n1,Comedy\n2\n")  # a row with a field missing
    with pytest.raises(CollabkitError, match="line 3"):
        load_genres(str(tmp_path / "short.csv"), None)
    (tmp_path / "twice.csv").write_text("item,genres\n1,Comedy\n1,Drama\n")
    with pytest.raises(CollabkitError, match="genres"):
        load_genres(str(tmp_path / "twice.csv"), None)


def test_pure_helpers() -> None:
    hits, total = search_titles(["Alien (1979)", "Aliens (1986)", "Heat"], np.array([5, 9, 1]), " ALIEN", 5)
    assert hits == [1, 0] and total == 2
    unit = np.eye(3, dtype=np.float32)
    unit[2] = [0.6, 0.8, 0]
    pos, sims = closest_rated(unit, np.array([2]), np.array([0, 1]))
    assert pos.tolist() == [[1, 0]] and sims[0].tolist() == pytest.approx([0.8, 0.6])


# -- the command, on a real socket ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collabkit_serve_answers_over_a_socket(model: tuple[Path, pd.DataFrame]) -> None:
    import httpx

    port = free_port()
    env = {**os.environ, "COLLABKIT_API_KEY": "k3y"}
    command = [sys.executable, "-m", "collabkit.cli", "serve", str(model[0]), "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--genres", "none"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        with httpx.Client(base_url=base, timeout=5, headers={"X-API-Key": "k3y"}) as http:
            while True:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "serve exited"
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "collabkit serve did not answer /health within 40 s"
                time.sleep(0.2)
            assert http.get("/recommend", params={"user": "1", "n": 3}).json()["recommendations"][0]["title"]
            posted = http.post("/recommend", json={"ratings": {"Film 110 (2010)": 5}, "n": 4})
            assert posted.status_code == 200 and len(posted.json()["recommendations"]) == 4
            assert http.get("/similar", params={"item": TWIN}).status_code == 404
            assert (
                http.get("/recommend", params={"user": "1"}, headers={"X-API-Key": "no"}).status_code == 401
            )
            assert http.get("/").text.startswith("<!doctype html>")
            assert http.get("/health").json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode is not None


def test_docs_page_is_served_from_the_package_not_a_cdn(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))]
    for asset in ("static/swagger-ui-bundle.js", "static/swagger-ui.css"):
        assert asset in page.text and client.get("/" + asset).status_code == 200
    assert client.get("/openapi.json").json()["paths"]


# -- the layout: schemas apart from the library's names, the why outside the routes ---------------


def test_schema_names_do_not_clash_with_the_librarys() -> None:
    import pydantic

    import collabkit
    import collabkit.interpret
    import collabkit.models
    import collabkit.recommend
    import collabkit.service
    from collabkit.service import schemas

    bodies = {
        n for n, v in vars(schemas).items() if isinstance(v, type) and issubclass(v, pydantic.BaseModel)
    }
    library = set()
    for module in (collabkit, collabkit.recommend, collabkit.interpret, collabkit.models):
        library |= set(module.__all__)
    assert len(bodies) >= 15 and not bodies & library
    assert "MAX_N" not in vars(collabkit.service) and "MAX_RATINGS" not in vars(collabkit.service)
    assert MAX_RESULTS < collabkit.recommend.MAX_N  # the per-request cap, not the engine's


def test_why_is_the_bias_and_the_nearest_rated_vectors(rec: Recommender) -> None:
    from collabkit.recommend.why import why_recommended, why_tables

    new = rec.fold_in({110: 5, 111: 1, 112: 4})
    recs = rec.recommend_for_ratings(new, 5)
    reasons = why_recommended(rec, new, recs.items)
    v = rec.model.item_vectors().detach().numpy()
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    bias = rec.model.item_biases().detach().numpy().reshape(-1)
    for item, why in zip(recs.items, reasons, strict=True):
        i = int(rec.items.encode([item])[0])
        assert why.item == item and why.bias == pytest.approx(float(bias[i]))
        sims = {r: float(unit[i] @ unit[int(rec.items.encode([r])[0])]) for r in (110, 111, 112)}
        best = sorted(sims, key=lambda r: -sims[r])[:2]
        assert [c.item for c in why.closest] == best
        assert [c.similarity for c in why.closest] == pytest.approx([sims[r] for r in best], abs=1e-5)
        assert [c.your_rating for c in why.closest] == [{110: 5.0, 111: 1.0, 112: 4.0}[r] for r in best]
    assert why_tables(rec).unit is not None and why_tables(rec).bias is not None


def test_bias_min_count_is_20_or_the_median_for_a_small_catalogue(rec: Recommender) -> None:
    from collabkit.recommend.why import bias_min_count

    counts = rec.item_counts.numpy()[1:]
    assert bias_min_count(rec) == int(min(20, np.median(counts[counts > 0])))
    assert bias_min_count(rec, most=5) == 5


def test_route_functions_are_plain_functions(rec: Recommender) -> None:
    """Called with the Recommender and the state passed in: no app, no HTTP."""
    import asyncio

    from collabkit.recommend.why import bias_min_count
    from collabkit.service import routes
    from collabkit.service.deps import build_state
    from collabkit.service.schemas import RatingsRequest

    state = build_state(rec)
    body = RatingsRequest(ratings={"Film 110 (2010)": 5, "111": 1}, n=4)
    answer = asyncio.run(routes.recommend_new(body, rec, state))
    assert state.ranker is not None and answer.ranked_by == state.ranker.name
    assert [x.item for x in answer.recommendations] == list(
        state.ranker.rec.recommend_for_ratings({110: 5}, 4, exclude=[110, 111]).items
    )
    assert {c.item for x in answer.recommendations for c in x.why.closest} <= {110, 111}
    biases = asyncio.run(routes.biases(rec, n=2))
    assert biases.min_count == bias_min_count(rec) and len(biases.highest) == 2
    assert biases.highest[0].bias >= biases.highest[1].bias


# -- the contract: what openapi.json documents is what the service answers ----------------------------


def test_every_error_is_the_documented_error_body(client: TestClient) -> None:
    from collabkit.service.schemas import ErrorResponse

    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's list-of-dicts `detail`
    ref = "#/components/schemas/ErrorResponse"
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert "422" in op["responses"], (method, path)  # a parameter it does not take, at least
            for code, answer in op["responses"].items():
                if code != "200":
                    assert answer["content"]["application/json"]["schema"]["$ref"] == ref, (
                        method,
                        path,
                        code,
                    )
    answers = [
        client.get("/items", params={"q": "x" * 201}),
        client.get("/recommend", params={"user": "1", "n": "ten"}),
        client.post("/recommend", json={"ratings": {"110": 5}, "extra": 1}),
        client.get("/recommend", params={"user": "nobody"}),
        client.get("/similar", params={"item": TWIN}),
    ]
    for r in answers:
        assert r.status_code in (404, 422)
        body = ErrorResponse.model_validate(r.json())
        assert body.detail and (body.errors is not None) == (
            r.status_code == 422 and "nobody" not in r.url.query.decode()
        )


@pytest.mark.parametrize(
    "body",
    [
        b'{"ratings": {"110": 5}}\xff',  # not UTF-8: FastAPI answered an undocumented 400
        b"\xff\xfe{}",
        b'{"ratings": {"110": NaN}}',  # Python's json reads NaN and Infinity; JSON has neither
        b'{"ratings": {"110": Infinity}}',
        b'{"ratings": {"110": 1e400}}',  # a float overflowing to infinity
        b'{"ratings": {"110": 5}, "n": ' + b"9" * 5000 + b"}",  # past Python's int-digits limit: a 400
        b"[" * 20000,  # deeper than the parser's recursion: a 400
    ],
)
def test_bodies_that_are_not_strict_json_are_a_documented_422(client: TestClient, body: bytes) -> None:
    r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["type"] == "json_invalid" and "JSON" in r.json()["detail"]


def test_non_finite_ratings_are_refused_by_the_body_model_too() -> None:
    from pydantic import ValidationError

    from collabkit.service.schemas import RatingsRequest

    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValidationError, match="finite"):
            RatingsRequest(ratings={"110": bad})


def test_a_405_lists_every_method_of_the_path(client: TestClient) -> None:
    for method in ("OPTIONS", "PUT", "DELETE"):
        r = client.request(method, "/recommend")
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST", (method, r.headers)
    assert client.request("OPTIONS", "/similar").headers["allow"] == "GET"


def test_every_integer_parameter_has_a_documented_range(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    seen = 0
    for path, methods in doc["paths"].items():
        for op in methods.values():
            for p in op.get("parameters", []):
                schema = p["schema"]
                options = schema.get("anyOf", [schema])
                for s in options:
                    if s.get("type") == "integer":
                        seen += 1
                        assert "minimum" in s and "maximum" in s, (path, p["name"])
    body = doc["components"]["schemas"]["RatingsRequest"]["properties"]["n"]
    assert seen >= 6 and body["minimum"] == 1 and body["maximum"] == MAX_RESULTS
    for path in ("/similar?item=110", "/biases?n=3"):
        for huge in (2**31, 2**64, 10**40):
            r = client.get(f"{path}&min_count={huge}")
            assert r.status_code == 422 and "less than or equal" in r.json()["detail"], (path, huge, r.text)


def test_parameters_a_route_does_not_take_are_refused(client: TestClient) -> None:
    r = client.post("/recommend?popularity_penalty=2", json={"ratings": {"110": 5}})
    assert r.status_code == 422 and "popularity_penalty" in r.json()["detail"]
    r = client.get("/recommend", params={"user": "1", "n": 3, "min_count": 5})
    assert r.status_code == 422 and "takes n, user" in r.json()["detail"]
    assert client.get("/map", params={"x": 1}).status_code == 422
    assert client.get("/similar", params={"item": "110", "n": 3, "min_count": 2}).status_code == 200


def test_serve_on_a_port_in_use_is_one_line_and_no_banner(model: tuple[Path, pd.DataFrame]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli_app, ["serve", str(model[0]), "--port", str(port), "--genres", "none"]
        )
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"collabkit: error: port {port} on 127.0.0.1 is in use (another `collabkit serve`?); stop it or "
        "pick another with --port"
    )


def test_a_disk_fault_when_loading_says_so(
    model: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import collabkit.persist

    def full(*_: Any, **__: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(collabkit.persist, "load_file", full)
    result = CliRunner().invoke(
        cli_app, ["serve", str(model[0]), "--port", str(free_port()), "--genres", "none"]
    )
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "damaged" not in result.output


def test_popular_users_profile_catalogue_and_filters(client: TestClient, rec: Recommender) -> None:
    """The page's routes: popular is the most rated; a known user's ratings beside their list;
    filters by genre, year and ratings; items left out; the scale and the ranker beside the model."""
    counts = rec.item_counts.numpy()
    pop = client.get("/popular", params={"n": 5}).json()
    assert [x["n_ratings"] for x in pop["items"]] == sorted(counts[counts > 0], reverse=True)[:5]
    cat = client.get("/catalogue").json()
    assert cat["scale"] == {"low": 1.0, "high": 5.0, "step": 1.0, "liked": 4.0}
    assert cat["kind"] == "item" and cat["ranker"]["family"] == "easeknn" and cat["ranker"]["seconds"] >= 0
    assert cat["year_min"] == 1990 and cat["year_max"] == 2044 and set(cat["genres"]) <= set(GENRES)
    users = client.get("/users", params={"limit": 3}).json()["users"]
    assert [u["n_ratings"] for u in users] == sorted([u["n_ratings"] for u in users], reverse=True)
    who = str(users[0]["user"])
    prof = client.get("/profile", params={"user": who, "n": 5}).json()
    assert prof["n_ratings"] == users[0]["n_ratings"] and prof["ranked_by"] == "easeknn"
    mine = {x["item"] for x in prof["ratings"]}
    assert len(prof["recommendations"]) == 5 and not mine & {x["item"] for x in prof["recommendations"]}
    gone = prof["recommendations"][0]["item"]
    again = client.get("/profile", params={"user": who, "n": 5, "exclude": [str(gone)], "year_min": 2020})
    assert again.status_code == 200, again.text
    assert all(x["item"] != gone and x["item"] + 1900 >= 2020 for x in again.json()["recommendations"])
    body = {"ratings": {"110": 5}, "n": 5, "genre": "Horror", "min_count": 40}
    horror = client.post("/recommend", json=body).json()["recommendations"]
    state = client.app.state.service  # type: ignore[attr-defined]
    assert horror and all("Horror" in state.genres[x["item"]] for x in horror)
    assert all(counts[state.item_index(x["item"])] >= 40 for x in horror)
    none = client.post("/recommend", json={"ratings": {"110": 5}, "year_min": 3000}).json()
    assert none["recommendations"] == []
    assert client.get("/profile", params={"user": "nobody"}).status_code == 404
