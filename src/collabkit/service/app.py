"""HTTP routes over a trained model: request/response models and routing, no model logic.

`create_app(path_or_recommender)` loads the model once and answers JSON: recommendations for a known
user or for a new user's ratings, similar items, predictions, explained predictions, title search,
the embedding map, the biases and the model's own settings and training history. `GET /` is the web
page in `static/`, served by the same process. Every answer is deterministic: the same request gives
the same bytes. The routes are `async`: a model call takes well under a millisecond, so it runs
on the event loop (no thread-pool hop, and one request at a time touches the Recommender's caches).

Errors are JSON with a `detail`: 404 for an unknown user or item (and for a title naming several
items, with the `candidates`), 422 for bad parameters or any other `CollabkitError`, 413 for a body
over `MAX_BODY_BYTES`, 401 for a missing or wrong API key.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

import collabkit.interpret as interpret
from collabkit.errors import AmbiguousIdError, CollabkitError, UnknownIdError
from collabkit.recommend import Recommender

MAX_N = 100  # the longest list one request may ask for
MAX_RATINGS = 200  # the most ratings one new user may send
MAX_BODY_BYTES = 64 * 1024  # the largest request body
MAX_LIMIT = 100  # the most search results
MAP_POINTS = 1000  # the chapter maps the 1000 most rated items
STATIC = Path(__file__).with_name("static")
KEY_HEADER = "x-api-key"
KEY_COOKIE = "collabkit_key"

ItemId = int | str
PAGE_HEADERS = {  # the page loads only its own files and talks only to this service
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


# -- response and request models ----------------------------------------------------------------


class Health(BaseModel):
    status: str
    model: str
    n_items: int = Field(description="Items with training ratings: the catalogue that can be recommended.")
    n_users: int
    score_kind: str
    version: str


class RecommendedItem(BaseModel):
    item: ItemId
    title: str
    rating: float = Field(description="Predicted rating (a ranking model's score where score_kind says so).")


class RatedItem(BaseModel):
    item: ItemId
    title: str
    rating: float


class CloseRated(BaseModel):
    item: ItemId
    title: str
    similarity: float
    your_rating: float


class Why(BaseModel):
    bias: float | None = Field(description="The item's bias: liked (or not) beyond anyone's taste.")
    closest: list[CloseRated] = Field(description="The rated items whose vectors point most nearly its way.")


class NewUserItem(RecommendedItem):
    why: Why


class Recommendations(BaseModel):
    user: ItemId | None = None
    score_kind: str
    recommendations: list[RecommendedItem]


class NewUserRecommendations(BaseModel):
    score_kind: str
    ratings: list[RatedItem]
    ignored: list[ItemId] = Field(description="Rated items the model has no training ratings for.")
    recommendations: list[NewUserItem]


class RatingsIn(BaseModel):
    """A new user's ratings, by item id or title, and how many recommendations to return."""

    model_config = ConfigDict(extra="forbid")
    ratings: dict[str, float] = Field(max_length=MAX_RATINGS, examples=[{"Star Wars (1977)": 5}])
    n: int = Field(10, ge=1, le=MAX_N)


class SimilarItem(BaseModel):
    item: ItemId
    title: str
    score: float = Field(description="Cosine similarity of the item vectors.")
    n_ratings: int


class Similar(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    similar_items: list[SimilarItem]


class Prediction(BaseModel):
    user: ItemId
    item: ItemId
    title: str
    rating: float


class Item(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    mean_rating: float | None


class Items(BaseModel):
    q: str
    total: int = Field(description="How many items match, of which `items` lists the most rated.")
    items: list[Item]


class Factor(BaseModel):
    factor: int
    value: float


class Explanation(BaseModel):
    user: ItemId
    item: ItemId
    title: str
    rating: float
    raw: float
    offset: float
    user_bias: float
    item_bias: float
    dot: float
    top_factors: list[Factor] = Field(description="The largest factor products, by size.")
    other_factors: float = Field(description="The sum of the other factor products.")
    y_range: list[float] | None
    actual: float | None
    notes: list[str]


class MapPoint(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    x: float
    y: float
    genres: list[str]


class MapAxis(BaseModel):
    component: int
    variance_share: float
    low_end: list[str]
    high_end: list[str]


class EmbeddingMap(BaseModel):
    points: list[MapPoint]
    axes: list[MapAxis]
    genres: list[str] = Field(description="Every genre of the mapped items, most common first.")


class Bias(BaseModel):
    item: ItemId
    title: str
    bias: float
    n_ratings: int
    mean_rating: float | None


class Biases(BaseModel):
    min_count: int
    highest: list[Bias]
    lowest: list[Bias]


class ModelInfo(BaseModel):
    model: str
    score_kind: str
    config: dict[str, Any]
    data: dict[str, Any] | None
    results: dict[str, Any]
    history: list[dict[str, Any]]


class Error(BaseModel):
    detail: Any
    candidates: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Error, "description": "Unknown user or item, or a title naming several items"},
    422: {"model": Error, "description": "Bad parameters"},
}


# -- pure helpers -------------------------------------------------------------------------------


def bundle_of(rec: Recommender) -> Any:
    """The trained bundle behind a Recommender (`trained` now; `saved` in older versions)."""
    for name in ("trained", "saved"):
        found = getattr(rec, name, None)
        if found is not None:
            return found
    raise CollabkitError("this Recommender exposes no trained bundle (.trained or .saved)")


def plain(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def search_titles(titles: list[str], counts: np.ndarray, q: str, limit: int) -> tuple[list[int], int]:
    """Positions of the titles containing `q` (any case), most rated first; and how many match.

    An empty `q` matches everything, so the page can list the most rated items.
    """
    needle = q.strip().casefold()
    hits = [k for k, t in enumerate(titles) if needle in t.casefold()]
    hits.sort(key=lambda k: (-int(counts[k]), titles[k], k))
    return hits[:limit], len(hits)


def map_points(scores: Any, genres: Mapping[Any, str] | None) -> list[dict[str, Any]]:
    """Points of an embedding map's `scores` table (item, title, n_ratings, pc1, pc2) with genres."""
    out = []
    for row in scores.itertuples(index=False):
        g = (genres or {}).get(row.item) or ""
        out.append(
            {
                "item": plain(row.item),
                "title": str(row.title),
                "n_ratings": int(row.n_ratings),
                "x": float(row.pc1),
                "y": float(row.pc2),
                "genres": [x for x in str(g).split("|") if x],
            }
        )
    return out


def closest_rated(
    unit: np.ndarray, rec_idx: np.ndarray, rated_idx: np.ndarray, k: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item, the `k` rated items most cosine-similar to it.

    `unit` is (n_items, d) unit-length item vectors. Returns positions into `rated_idx` and their
    similarities, each (len(rec_idx), min(k, len(rated_idx))), most similar first (ties by position).
    """
    if len(rated_idx) == 0 or len(rec_idx) == 0:
        return np.zeros((len(rec_idx), 0), dtype=np.int64), np.zeros((len(rec_idx), 0), dtype=np.float32)
    sims = unit[rec_idx] @ unit[rated_idx].T  # (n_rec, n_rated)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


# -- the application ----------------------------------------------------------------------------


class _Service:
    """What every request needs, prepared once when the app is made."""

    def __init__(self, rec: Recommender, genres: Mapping[Any, str] | None) -> None:
        self.rec = rec
        self.bundle = bundle_of(rec)
        self.genres = dict(genres or {})
        counts = np.asarray(
            rec.item_counts.cpu().numpy() if hasattr(rec.item_counts, "cpu") else rec.item_counts
        )
        self.counts = counts
        self.index = {item: k for k, item in enumerate(rec.items)}
        trained = np.flatnonzero(counts > 0)
        trained = trained[trained != 0]
        self.trained_idx = trained
        self.item_ids = [rec.items[int(i)] for i in trained]
        self.titles = [rec.title(i) for i in self.item_ids]
        self.trained_counts = counts[trained]
        means = self.bundle.item_means().cpu().numpy() if hasattr(self.bundle, "item_means") else None
        self.trained_means = None if means is None else means[trained]
        self.score_kind = str(getattr(rec.model, "score_kind", "rating"))
        self.unit = self._unit_vectors()
        self.item_bias = self._item_bias()
        self._map: dict[str, Any] | None = None

    def _unit_vectors(self) -> np.ndarray | None:
        vectors = getattr(self.rec.model, "item_vectors", None)
        if vectors is None:
            return None
        v = vectors().detach().float().cpu().numpy()
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norms > 0, norms, 1.0)

    def _item_bias(self) -> np.ndarray | None:
        biases = getattr(self.rec.model, "item_biases", None)
        b = biases() if biases is not None else None
        return None if b is None else b.detach().float().cpu().numpy().reshape(-1)

    def item_index(self, item: Any) -> int:
        """The index of a raw item id (a dict made once: the vocabulary's own encode is per-list)."""
        return self.index[item]

    def embedding_map(self) -> dict[str, Any]:
        """The PCA map of the most rated items, computed on first use and kept."""
        if self._map is None:
            emap = interpret.embedding_map(self.bundle, k=2, top=MAP_POINTS)
            points = map_points(emap.scores, self.genres)
            tally: dict[str, int] = {}
            for p in points:
                for g in p["genres"]:
                    tally[g] = tally.get(g, 0) + 1
            axes = [
                {
                    "component": int(r["component"]),
                    "variance_share": float(r["variance_share"]),
                    "low_end": list(r["low_end"]),
                    "high_end": list(r["high_end"]),
                }
                for r in emap.components.to_dict("records")
            ]
            self._map = {
                "points": points,
                "axes": axes,
                "genres": sorted(tally, key=lambda g: (-tally[g], g)),
            }
        return self._map


def _check_key(scope: MutableMapping[str, Any], api_key: str) -> bool:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    given = headers.get(KEY_HEADER)
    auth = headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == KEY_COOKIE:
                given = value
    if given is None and scope.get("path") == "/":
        from urllib.parse import parse_qs

        given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key") or [None])[0]
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]  # noqa: E501


class _Guard:
    """ASGI middleware: the API key (every path but /health) and the body-size cap, before routing."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key and scope.get("path") != "/health" and not _check_key(scope, self.api_key):
            await _send_json(
                send, 401, {"detail": f"missing or wrong API key: send it in the {KEY_HEADER!r} header "
                            "(or 'Authorization: Bearer KEY'); for the page, open /?api_key=KEY once"},
                [(b"www-authenticate", b'Bearer realm="collabkit"')],
            )  # fmt: skip
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = self.max_body + 1
                if size > self.max_body:
                    await _send_json(send, 413, {"detail": _too_large(self.max_body)})
                    return
        seen = 0
        max_body = self.max_body

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:
                    raise HTTPException(413, _too_large(max_body))
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> str:
    return f"request body over {limit:,} bytes; send at most {MAX_RATINGS} ratings"


async def _send_json(
    send: Callable[[Any], Awaitable[None]],
    status: int,
    body: Any,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


def create_app(
    model: str | Path | Recommender,
    *,
    api_key: str | None = None,
    genres: Mapping[Any, str] | None = None,
    max_body: int = MAX_BODY_BYTES,
    title: str = "collabkit",
) -> FastAPI:
    """A FastAPI app answering for one trained model, loaded once (a folder, or a Recommender).

    Args:
        api_key: when given, every path but /health needs it (header `X-API-Key`, `Authorization:
            Bearer`, or for the page `/?api_key=KEY` once, which sets a cookie).
        genres: raw item id -> "Genre|Genre", to colour the map (saved models keep no genres).
        max_body: the largest request body in bytes; larger ones get 413.
    """
    from collabkit import __version__

    rec = model if isinstance(model, Recommender) else Recommender.load(model)
    svc = _Service(rec, genres)
    app = FastAPI(
        title=f"{title}: {svc.bundle.name} model",
        version=__version__,
        description="Recommendations, similar items, predictions and explanations from a trained model.",
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours serves it from the package
        redoc_url=None,
    )
    app.state.service = svc
    app.add_middleware(_Guard, api_key=api_key or None, max_body=max_body)  # type: ignore[arg-type]

    # -- errors ---------------------------------------------------------------------------------
    @app.exception_handler(AmbiguousIdError)
    async def ambiguous(_: Request, e: AmbiguousIdError) -> JSONResponse:
        return JSONResponse({"detail": str(e), "candidates": plain(e.candidates)}, status_code=404)

    @app.exception_handler(UnknownIdError)
    async def unknown(_: Request, e: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(CollabkitError)
    async def bad_input(_: Request, e: CollabkitError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(_: Request, e: Exception) -> JSONResponse:  # logged by uvicorn; the service stays up
        return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server's log"}, 500)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in e.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
        return JSONResponse({"detail": summary or "invalid request", "errors": errors}, status_code=422)

    # -- routes ---------------------------------------------------------------------------------
    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness, and what is loaded: the model's name and catalogue size (no key needed)."""
        return {
            "status": "ok",
            "model": svc.bundle.name,
            "n_items": len(svc.trained_idx),
            "n_users": int((np.asarray(rec.user_counts) > 0).sum()),
            "score_kind": svc.score_kind,
            "version": __version__,
        }

    @app.get("/recommend", response_model=Recommendations, responses=ERRORS)
    async def recommend_user(
        user: str = Query(..., max_length=200, description="Raw id of a user the model trained on."),
        n: int = Query(10, ge=1, le=MAX_N),
    ) -> dict[str, Any]:
        """The n best items a known user has not rated, best first."""
        uid = rec.parse_user(user)
        recs = rec.recommend(uid, n)
        return {
            "user": plain(uid),
            "score_kind": recs.score_kind,
            "recommendations": [
                {"item": plain(i), "title": t, "rating": float(s)}
                for i, t, s in zip(recs.items, recs.titles, recs.scores, strict=True)
            ],
        }

    @app.post("/recommend", response_model=NewUserRecommendations, responses=ERRORS)
    async def recommend_new(body: RatingsIn) -> dict[str, Any]:
        """Recommendations for a new user folded in from their ratings (titles or ids), each with a why."""
        new = rec.fold_in(body.ratings)
        recs = rec.recommend_for_ratings(new, body.n)
        rated = [(item, float(r)) for item, r in new.rated.items()]
        ignored = set(new.ignored)
        used = [(item, r) for item, r in rated if item not in ignored]
        rated_idx = np.array([svc.item_index(i) for i, _ in used], dtype=np.int64)
        rec_idx = np.array([svc.item_index(i) for i in recs.items], dtype=np.int64)
        if svc.unit is not None:
            pos, sims = closest_rated(svc.unit, rec_idx, rated_idx)
        else:
            pos, sims = np.zeros((len(rec_idx), 0), dtype=np.int64), np.zeros((len(rec_idx), 0))
        out = []
        for k, (i, t, s) in enumerate(zip(recs.items, recs.titles, recs.scores, strict=True)):
            closest = [
                {"item": plain(used[p][0]), "title": rec.title(used[p][0]), "similarity": float(sim),
                 "your_rating": used[p][1]}
                for p, sim in zip(pos[k], sims[k], strict=True)
            ]  # fmt: skip
            bias = None if svc.item_bias is None else float(svc.item_bias[rec_idx[k]])
            out.append(
                {"item": plain(i), "title": t, "rating": float(s), "why": {"bias": bias, "closest": closest}}
            )
        return {
            "score_kind": recs.score_kind,
            "ratings": [{"item": plain(i), "title": rec.title(i), "rating": r} for i, r in rated],
            "ignored": [plain(i) for i in new.ignored],
            "recommendations": out,
        }

    @app.get("/similar", response_model=Similar, responses=ERRORS)
    async def similar(
        item: str = Query(..., max_length=500, description="An item id or a title naming one item."),
        n: int = Query(5, ge=1, le=MAX_N),
        min_count: int = Query(1, ge=1, description="Only neighbours with at least this many ratings."),
    ) -> dict[str, Any]:
        """The n items whose vectors point most nearly the same way (cosine similarity)."""
        iid = rec.parse_item(item)
        near = rec.similar_items(iid, n, min_count=min_count)
        return {
            "item": plain(iid),
            "title": rec.title(iid),
            "n_ratings": int(svc.counts[svc.item_index(iid)]),
            "similar_items": [
                {
                    "item": plain(i),
                    "title": t,
                    "score": float(s),
                    "n_ratings": int(svc.counts[svc.item_index(i)]),
                }
                for i, t, s in zip(near.items, near.titles, near.scores, strict=True)
            ],
        }

    @app.get("/predict", response_model=Prediction, responses=ERRORS)
    async def predict(
        user: str = Query(..., max_length=200), item: str = Query(..., max_length=500)
    ) -> dict[str, Any]:
        """The rating the model predicts `user` gives `item`."""
        uid, iid = rec.parse_user(user), rec.parse_item(item)
        rating = float(rec.predict(users=[uid], items=[iid])[0])
        return {"user": plain(uid), "item": plain(iid), "title": rec.title(iid), "rating": rating}

    @app.get("/items", response_model=Items)
    async def items(
        q: str = Query("", max_length=200, description="Text the title contains (any case); empty: all."),
        limit: int = Query(20, ge=1, le=MAX_LIMIT),
    ) -> dict[str, Any]:
        """Items with training ratings whose title contains `q`, most rated first."""
        hits, total = search_titles(svc.titles, svc.trained_counts, q, limit)
        means = svc.trained_means
        return {
            "q": q,
            "total": total,
            "items": [
                {
                    "item": plain(svc.item_ids[k]),
                    "title": svc.titles[k],
                    "n_ratings": int(svc.trained_counts[k]),
                    "mean_rating": None if means is None else plain(float(means[k])),
                }
                for k in hits
            ],
        }

    @app.get("/explain", response_model=Explanation, responses=ERRORS)
    async def explain(
        user: str = Query(..., max_length=200),
        item: str = Query(..., max_length=500),
        top: int = Query(5, ge=1, le=MAX_N),
    ) -> dict[str, Any]:
        """A predicted rating split into the biases and the largest factor products (dot models)."""
        uid, iid = rec.parse_user(user), rec.parse_item(item)
        e = interpret.explain_prediction(svc.bundle, uid, iid)
        products = np.asarray(e.factor_products, dtype=np.float64)
        order = np.argsort(-np.abs(products), kind="stable")
        shown, rest = order[:top], order[top:]
        return {
            "user": plain(e.user),
            "item": plain(e.item),
            "title": e.title,
            "rating": float(e.rating),
            "raw": float(e.raw),
            "offset": float(e.offset),
            "user_bias": float(e.user_bias),
            "item_bias": float(e.item_bias),
            "dot": float(products.sum()),
            "top_factors": [{"factor": int(k), "value": float(products[k])} for k in shown],
            "other_factors": float(products[rest].sum()),
            "y_range": None if e.y_range is None else [float(v) for v in e.y_range],
            "actual": None if e.actual is None else float(e.actual),
            "notes": list(e.notes),
        }

    @app.get("/map", response_model=EmbeddingMap, responses=ERRORS)
    async def embedding_map() -> dict[str, Any]:
        """The items on the first two principal components of their vectors, with titles and genres."""
        return svc.embedding_map()

    @app.get("/biases", response_model=Biases, responses=ERRORS)
    async def biases(
        n: int = Query(10, ge=1, le=MAX_N),
        min_count: int | None = Query(None, ge=1, description="Only items with this many ratings; "
                                      "default: 20, or fewer for a small catalogue."),
    ) -> dict[str, Any]:  # fmt: skip
        """The items most and least liked beyond anyone's taste (the highest and lowest item biases)."""
        if min_count is None:
            min_count = int(max(1, min(20, np.median(svc.trained_counts) if len(svc.trained_counts) else 1)))
        table = interpret.item_biases(svc.bundle, n, min_count)
        rows = {side: [] for side in ("highest", "lowest")}  # type: dict[str, list[dict[str, Any]]]
        for r in table.to_dict("records"):
            rows[r["side"]].append(
                {"item": plain(r["item"]), "title": str(r["title"]), "bias": float(r["bias"]),
                 "n_ratings": int(r["n_ratings"]), "mean_rating": plain(r["mean_rating"])}
            )  # fmt: skip
        return {"min_count": min_count, **rows}

    @app.get("/model", response_model=ModelInfo)
    async def model_info() -> dict[str, Any]:
        """The model's settings, training data, held-out figures and epoch history."""
        b = svc.bundle
        config = plain(b.config)
        data = getattr(b, "data", None)
        meta = getattr(b, "meta", None) or {}
        history = getattr(b, "history", None) or meta.get("history") or meta.get("epochs") or []
        results = getattr(b, "results", None) or meta.get("results") or {}
        return {
            "model": b.name,
            "score_kind": svc.score_kind,
            "config": config if isinstance(config, dict) else {"value": config},
            "data": None if data is None else plain(data),
            "results": plain(results),
            "history": plain(list(history)),
        }

    # -- the page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        response = FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
        if api_key:  # the page's own requests then carry the key
            response.set_cookie(KEY_COOKIE, api_key, httponly=True, samesite="strict")
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _mount_docs(app)
    return app


def _mount_docs(app: FastAPI) -> None:
    """`/docs`: FastAPI's Swagger UI page, its script and style served from the swagger-ui-bundle
    package (nothing fetched from a CDN, so it works offline and under the page's CSP)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=app.title,
            swagger_js_url="docs-assets/swagger-ui-bundle.js",
            swagger_css_url="docs-assets/swagger-ui.css",
            swagger_favicon_url="data:,",  # no icon rather than one from the internet
        )
