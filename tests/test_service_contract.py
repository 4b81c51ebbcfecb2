"""Every registered family behind the service: every route of the OpenAPI description answers.

Parametrised over `model_names()` and over `app.openapi()["paths"]`, so a family or a route added
later is covered with no new test list. With valid inputs each route answers 200, or 422 with a
`detail` naming the family when its declared capabilities lack what the route needs (the route's
`x-requires`); never 500.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from collabkit.models import family, model_names
from collabkit.recommend import Recommender
from collabkit.service import create_app, routes
from collabkit.service.deps import build_state
from collabkit.workflows import TrainConfig, train
from tests.conftest import make_ratings

FAMILIES = list(model_names())


def tiny_table() -> pd.DataFrame:
    """40 users x 30 items, 700 ratings with hidden factors; titles so items can be asked by name."""
    table = make_ratings(n_users=40, n_items=30, n=700, seed=7)
    table["title"] = [f"Film {i} ({1900 + i})" for i in table["item"]]
    return table


def quick(name: str) -> TrainConfig:
    """The family's default settings; one epoch of the chapter's recipe for a family trained by
    gradient steps (the fast recipe may keep its biases-only start on so small a table, with no
    factors to serve: tests/test_kept_start.py serves that case)."""
    fast: dict = {}
    if family(name).trains_by_gradient:
        fast = {"epochs": 1, "bs": 256, "recipe": "chapter" if "chapter" in family(name).recipes else None}
    return TrainConfig(model=name, **fast)


def train_family(name: str, folder: Path, table: pd.DataFrame | None = None) -> Recommender:
    """A model of family `name` on `tiny_table` (or `table`), saved to `folder` and loaded."""
    train(tiny_table() if table is None else table, quick(name), out=folder, log=None)
    return Recommender.load(folder)


@pytest.fixture(scope="module", params=FAMILIES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    rec = train_family(name, folder)
    app = create_app(rec)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield name, rec, app, client, folder


def known(rec: Recommender) -> tuple[Any, Any]:
    """The most active trained user and the most rated item."""
    user = rec.users[int(np.argmax(rec.user_counts.numpy()))]
    item = rec.items[int(np.argmax(rec.item_counts.numpy()))]
    return user, item


def param_values(rec: Recommender) -> dict[str, Any]:
    user, item = known(rec)
    return {"user": str(user), "item": str(item), "n": 3, "q": "film", "limit": 5, "top": 3, "min_count": 1}


def body_for(schema_ref: str, rec: Recommender) -> Any:
    _, item = known(rec)
    bodies = {"RatingsRequest": {"ratings": {str(item): 4, rec.title(rec.items[2]): 2}, "n": 3}}
    name = schema_ref.rsplit("/", 1)[-1]
    assert name in bodies, f"no valid body for schema {name}: add one to tests/test_service_contract.py"
    return bodies[name]


def test_every_route_answers_or_refuses_by_capability(served: Any) -> None:
    name, rec, app, client, _ = served
    caps = family(name).capabilities().to_dict()
    values = param_values(rec)
    spec = app.openapi()
    checked = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = {}
            for p in op.get("parameters", []):
                if p["name"] in values:
                    params[p["name"]] = values[p["name"]]
                else:
                    assert not p.get("required"), f"no valid value for {p['name']} of {method} {path}"
            body = None
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                body = body_for(ref, rec)
            r = client.request(method.upper(), path, params=params, json=body)
            needs = op.get("x-requires", [])
            lacking = [c for c in needs if not caps[c]]
            where = f"{name}: {method.upper()} {path} -> {r.status_code} {r.text[:300]}"
            if lacking:
                assert r.status_code == 422, where
                detail = r.json()["detail"]
                assert isinstance(detail, str) and f"model {name!r}" in detail, where
                assert f"{method.upper()} {path}" in detail, where
            else:
                assert r.status_code == 200, where
                assert r.json(), where
            checked.append((method, path))
    assert {("get", "/recommend"), ("post", "/recommend"), ("get", "/health")} <= set(checked)


def test_health_states_the_familys_capabilities(served: Any) -> None:
    name, _, _, client, _ = served
    body = client.get("/health").json()
    assert body["model"] == name
    assert body["capabilities"] == family(name).capabilities().to_dict()
    assert body["score_kind"] == family(name).score_kind


def test_route_functions_run_without_http(served: Any) -> None:
    """The routes are plain functions: the facade and the state passed in, no app, no client."""
    name, rec, _, _, _ = served
    state = build_state(rec)
    user, item = known(rec)
    listed = asyncio.run(routes.recommend_user(str(user), rec, n=4))
    assert len(listed.recommendations) == 4 and listed.user == user
    assert [x.item for x in listed.recommendations] == list(rec.recommend(user, 4).items)
    health = asyncio.run(routes.health(state))
    assert health.model == name and health.n_items == int((rec.item_counts[1:] > 0).sum())
    found = asyncio.run(routes.items(state, q="film 1", limit=3))
    assert len(found.items) == 3 and all("film 1" in x.title.lower() for x in found.items)


def test_serve_builds_the_app_for_every_family(served: Any) -> None:
    """`collabkit serve`'s builder starts for any family (it refused popular before)."""
    from collabkit.cli.serve import build_app

    name, _, _, _, folder = served
    app, shown, note = build_app(folder, None, "none", 1)
    assert shown == name and "no genres" in note
    with TestClient(app) as c:
        assert c.get("/health").json()["model"] == name
