"""What the routes receive through FastAPI dependencies: the Recommender, the per-app state, the
capability gate that refuses a route the model's family cannot answer (422 naming what it lacks),
and the strict reading of every request (`StrictRoute`: declared parameters only, strict JSON).

`ServiceState` is made once per app (`build_state`) and kept on `app.state.service`; a route asks
for it (or for the Recommender) with `Depends`, so a test can call a route function directly with
the state passed in.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from torch import Tensor

import collabkit.interpret as interpret
from collabkit.bundle import require_learned
from collabkit.errors import CollabkitError
from collabkit.models.base import Capabilities
from collabkit.models.sparse import CSR
from collabkit.recommend import Recommender
from collabkit.recommend.why import WhyTables, why_tables
from collabkit.service.blend import (
    Ranker,
    Scale,
    allowed_items,
    fit_ranker,
    is_movielens,
    rating_scale,
    title_year,
)
from collabkit.service.schemas import MAP_POINTS
from collabkit.version import __version__

MAX_JSON_DIGITS = 30  # a longer integer in a body is beyond every documented range: refused unparsed

# The package's version, from the module that holds it (collabkit/__init__ is above this layer).
VERSION = __version__

# What a route needs, in the words a refusal uses: "model 'popular' has <LACKS[c]>".
LACKS: dict[str, str] = {
    "ratings": "no predicted ratings (it ranks items; its scores are not stars)",
    "item_vectors": "no item vectors to compare",
    "user_vectors": "no user vectors to compare",
    "biases": "no item biases",
    "fold_in": "no fold-in of a new user",
    "explain": "no additive explanation of a score",
}


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


@dataclass
class ServiceState:
    """What every request needs, prepared once when the app is made."""

    rec: Recommender
    genres: dict[Any, str]
    capabilities: Capabilities
    counts: np.ndarray  # (n_items,) training ratings of each item index
    index: dict[Any, int]  # raw item id -> index (one dict: the vocabulary's encode is per list)
    trained_idx: np.ndarray  # indices of the items with training ratings: the catalogue
    item_ids: list[Any]  # their raw ids, titles, counts and mean ratings, in index order
    titles: list[str]
    trained_counts: np.ndarray
    trained_means: np.ndarray
    n_users: int
    why: WhyTables
    ranker: Ranker | None = None  # a ranking model beside a rating model (see `blend`), or None
    scale: Scale = field(default_factory=lambda: Scale(1.0, 5.0, 1.0))
    kind: str = "item"  # "movie" for MovieLens data: what the page calls the items
    reason_unit: Tensor | CSR | None = None  # (n_items, d) unit item vectors the plain reasons use
    _map: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The model's family name."""
        return self.rec.trained.name

    def allowed(
        self,
        genre: str | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        min_count: int = 1,
    ) -> list[Any] | None:
        """Raw ids of the catalogue items passing the page's filters; None when no filter is set."""
        if not genre and year_min is None and year_max is None and min_count <= 1:
            return None
        return allowed_items(
            self.titles, self.item_ids, self.trained_counts, self.genres,
            genre=genre, year_min=year_min, year_max=year_max, min_count=min_count,
        )  # fmt: skip

    def catalogue(self) -> dict[str, Any]:
        """What the page's filters offer: genres (most common first), the years titles name."""
        tally: dict[str, int] = {}
        for item in self.item_ids:
            for g in str(self.genres.get(item) or "").split("|"):
                if g:
                    tally[g] = tally.get(g, 0) + 1
        years = [y for y in (title_year(t) for t in self.titles) if y is not None]
        return {
            "genres": sorted(tally, key=lambda g: (-tally[g], g)),
            "year_min": min(years) if years else None,
            "year_max": max(years) if years else None,
        }

    def item_index(self, item: Any) -> int:
        """The index of a raw item id."""
        return self.index[item]

    def embedding_map(self) -> dict[str, Any]:
        """The PCA map of the most rated items, computed on first use and kept."""
        if self._map is None:
            emap = interpret.embedding_map(self.rec.trained, k=2, top=MAP_POINTS)
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


def learned_capabilities(rec: Recommender) -> Capabilities:
    """The family's capabilities, less the vectors a dot model did not learn (all zero: its fast
    recipe kept the biases-only start), so the page says there are none instead of asking."""
    caps = type(rec.model).capabilities()
    learned = {}
    for side, vectors in (("item_vectors", rec.model.item_vectors), ("user_vectors", rec.model.user_vectors)):
        if getattr(caps, side):
            try:
                require_learned(vectors(), side.split("_")[0])
            except CollabkitError:
                learned[side] = False
    return dataclasses.replace(caps, **learned) if learned else caps


def build_state(rec: Recommender, genres: Mapping[Any, str] | None = None) -> ServiceState:
    """The state of an app serving `rec`: catalogue tables, capabilities and the why-tables, once."""
    counts = rec.item_counts.cpu().numpy()
    ranker = fit_ranker(rec)
    unit = None  # the reasons compare co-rating columns (the ranker's) where there are any
    for source in (ranker.rec if ranker is not None else None, rec):
        if source is not None and type(source.model).capabilities().item_vectors:
            try:
                unit = source.trained.unit_item_vectors
            except CollabkitError:  # factors all zero (the biases-only start kept): no such reasons
                continue
            break
    trained = np.flatnonzero(counts > 0)
    trained = trained[trained != 0]
    item_ids = [rec.items[int(i)] for i in trained]
    return ServiceState(
        rec=rec,
        genres=dict(genres or {}),
        capabilities=learned_capabilities(rec),
        counts=counts,
        index={item: k for k, item in enumerate(rec.items)},
        trained_idx=trained,
        item_ids=item_ids,
        titles=[rec.title(i) for i in item_ids],
        trained_counts=counts[trained],
        trained_means=rec.trained.item_means().cpu().numpy()[trained],
        n_users=int((rec.user_counts.cpu().numpy() > 0).sum()),
        why=why_tables(rec),
        ranker=ranker,
        scale=rating_scale(rec.trained),
        kind="movie" if is_movielens(rec.trained) else "item",
        reason_unit=unit,
    )


def get_state(request: Request) -> ServiceState:
    """The app's `ServiceState` (made by `create_app`)."""
    state: ServiceState = request.app.state.service
    return state


def get_recommender(state: Annotated[ServiceState, Depends(get_state)]) -> Recommender:
    """The Recommender the app serves."""
    return state.rec


State = Annotated[ServiceState, Depends(get_state)]
Rec = Annotated[Recommender, Depends(get_recommender)]


def refusal(name: str, capabilities: Capabilities, needs: tuple[str, ...], what: str) -> str | None:
    """The one-line reason a `name` model cannot answer `what`, or None when it has all it `needs`."""
    have = capabilities.to_dict()
    missing = [c for c in needs if not have[c]]
    if not missing:
        return None
    lacks = " and ".join(LACKS.get(c, f"no {c.replace('_', ' ')}") for c in missing)
    return f"model {name!r} has {lacks}, so it cannot answer {what}; GET /health lists its capabilities"


class Requires:
    """Dependency: refuse the route with 422 unless the model's family has every named capability."""

    def __init__(self, *needs: str) -> None:
        unknown = set(needs) - set(Capabilities.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; expected some of {sorted(LACKS)}")
        self.needs = needs

    def __call__(self, request: Request, state: State) -> None:
        route = request.scope.get("route")
        path = route.path if isinstance(route, APIRoute) else request.url.path
        what = f"{request.method} {path}"
        reason = refusal(state.name, state.capabilities, self.needs, what)
        if reason is not None:
            raise HTTPException(status_code=422, detail=reason)


def requires(*needs: str) -> dict[str, Any]:
    """Route keyword arguments gating it on capabilities, named in the OpenAPI description too
    (`x-requires`), so clients and the contract test read the rule instead of guessing it."""
    return {"dependencies": [Depends(Requires(*needs))], "openapi_extra": {"x-requires": list(needs)}}


def _not_json(what: str, doc: str = "", pos: int = 0) -> json.JSONDecodeError:
    return json.JSONDecodeError(what, doc, pos)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _not_json(f"number {text[:40]} is beyond a 64-bit float")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _not_json(f"integer of {len(text)} digits is beyond every documented range")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _not_json(f"{name} is not JSON (a number must be finite)")


def strict_json(body: bytes) -> Any:
    """The JSON value of a request body, as RFC 8259 has it: UTF-8, finite numbers, no NaN/Infinity.

    Raises json.JSONDecodeError for anything else (bytes that are not UTF-8, a number too large for
    a float, a 31-digit integer, nesting deeper than the parser goes), which FastAPI answers with its
    documented 422, where Python's lenient `json.loads` would let NaN through or fail in a way FastAPI
    answers with an undocumented 400.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_json(f"the body is not UTF-8 (byte 0x{body[e.start]:02x} at {e.start})") from None
    try:
        return json.loads(text, parse_float=_finite_float, parse_int=_short_int, parse_constant=_no_constant)
    except RecursionError:
        raise _not_json("the body nests arrays or objects too deeply") from None


class StrictJSONRequest(Request):
    """A request whose `json()` is `strict_json` of its body."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


def query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return names


class StrictRoute(APIRoute):
    """A route that takes only what it documents: a query parameter it does not declare is a 422
    naming the ones it takes (not silently ignored, as `/recommend?popularity_penalty=2` was), and its
    JSON body is read with `strict_json` (every malformed body a documented 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = sorted(query_names(self.dependant))

        async def strict(request: Request) -> Response:
            unknown = sorted(set(request.query_params) - set(known))
            if unknown:
                takes = f"{request.method} {self.path} takes {', '.join(known) if known else 'no parameters'}"
                msg = f"not a parameter of this route ({takes})"
                raise RequestValidationError(
                    [
                        {"type": "extra_forbidden", "loc": ("query", name), "msg": msg,
                         "input": request.query_params[name]}
                        for name in unknown
                    ]
                )  # fmt: skip
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
