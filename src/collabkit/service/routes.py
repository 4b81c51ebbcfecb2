"""The service's routes: one module-level router; each route parses, asks the library, and shapes JSON.

Routes receive the Recommender and the app's state through dependencies (`deps.Rec`,
`deps.State`), so a test calls them as plain (async) functions with both passed in. A route that
needs a capability the model's family lacks is refused before it runs (`deps.requires`: 422, and
`x-requires` in the OpenAPI description). No model logic lives here: the "why" of a
recommendation and the biases' default `min_count` come from `collabkit.recommend.why`.

The routes are `async`: a model call takes well under a millisecond, so it runs on the event loop
(no thread-pool hop, and one request at a time touches the Recommender's caches).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query

import collabkit.interpret as interpret
from collabkit.defaults import MIN_COUNT
from collabkit.recommend import Recommender
from collabkit.recommend.why import bias_min_count, why_recommended
from collabkit.service.blend import closest_liked, plain_reason
from collabkit.service.deps import (
    VERSION,
    Rec,
    ServiceState,
    State,
    StrictRoute,
    plain,
    requires,
    search_titles,
)
from collabkit.service.schemas import (
    ERRORS,
    INVALID,
    MAX_COUNT,
    MAX_EXCLUDED,
    MAX_HISTORY,
    MAX_RESULTS,
    MAX_SEARCH_RESULTS,
    TOO_LARGE,
    AboutEntry,
    BiasEntry,
    BiasesResponse,
    CatalogueEntry,
    CatalogueResponse,
    CloseRatedEntry,
    ExplainResponse,
    FactorEntry,
    HealthResponse,
    ItemsResponse,
    MapResponse,
    ModelResponse,
    NewUserEntry,
    NewUserRecommendResponse,
    PopularResponse,
    PredictResponse,
    ProfileResponse,
    RankerEntry,
    RatedEntry,
    RatingsRequest,
    RecommendedEntry,
    RecommendResponse,
    ScaleEntry,
    SimilarEntry,
    SimilarResponse,
    UserEntry,
    UsersResponse,
    WhyEntry,
)

# An undeclared query parameter or a body that is not strict UTF-8 JSON: 422. `public` answers
# without the key (liveness); `router` holds every other route, behind the key when there is one.
public = APIRouter(route_class=StrictRoute)
router = APIRouter(route_class=StrictRoute)

UserText = Annotated[str, Query(max_length=200, description="Raw id of a user the model trained on.")]
ItemText = Annotated[str, Query(max_length=500, description="An item id, or a title naming one item.")]


@public.get("/health", response_model=HealthResponse, responses=INVALID)
async def health(state: State) -> HealthResponse:
    """Liveness, and what is loaded: the model's name, catalogue size and capabilities (no key needed)."""
    return HealthResponse(
        status="ok",
        model=state.name,
        n_items=len(state.trained_idx),
        n_users=state.n_users,
        score_kind=state.rec.model.score_kind,
        capabilities=state.capabilities.to_dict(),
        version=VERSION,
    )


@router.get("/recommend", response_model=RecommendResponse, responses=ERRORS)
async def recommend_user(
    user: UserText, rec: Rec, n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 10
) -> RecommendResponse:
    """The n best items a known user has not rated, best first."""
    uid = rec.parse_user(user)
    recs = rec.recommend(uid, n, min_count=MIN_COUNT)
    return RecommendResponse(
        user=plain(uid),
        score_kind=recs.score_kind,
        min_count=MIN_COUNT,
        recommendations=[
            RecommendedEntry(item=plain(i), title=t, rating=float(s))
            for i, t, s in zip(recs.items, recs.titles, recs.scores, strict=True)
        ],
    )


@router.post(
    "/recommend",
    response_model=NewUserRecommendResponse,
    responses={**ERRORS, **TOO_LARGE},
    **requires("fold_in"),
)
async def recommend_new(body: RatingsRequest, rec: Rec, state: State) -> NewUserRecommendResponse:
    """Recommendations for a new user folded in from their ratings (titles or ids), each with a why.

    When the model predicts ratings, a ranking model fitted beside it at start-up (`ranked_by`)
    orders the list from the liked items, and `rating` is the rating model's predicted stars
    (`stars_by`): a rating model ranks nearly everyone's list by the items' biases.
    """
    new = rec.fold_in(body.ratings, about=body.about or None)
    exclude = [rec.parse_item(x) for x in body.exclude]
    allow = state.allowed(body.genre, body.year_min, body.year_max)  # min_count: the library's
    used = {i: r for i, r in new.rated.items() if i not in set(new.ignored)}
    liked = {i: r for i, r in used.items() if r >= state.scale.liked}
    ranker = state.ranker.rec if state.ranker is not None and liked else None
    if allow is not None and not allow:
        items, scores, ranked_by = [], [], (ranker or rec).trained.name
    elif ranker is not None:
        order = ranker.recommend_for_ratings(
            ranker.fold_in(liked),
            body.n,
            min_count=body.min_count,
            items=allow,
            exclude=[*exclude, *new.rated],
        )
        items, ranked_by = list(order.items), ranker.trained.name
        scores = [float(x) for x in rec.predict_new(new, items)] if items else []
    else:
        recs = rec.recommend_for_ratings(
            new, body.n, min_count=body.min_count, items=allow, exclude=exclude or None
        )
        items, scores, ranked_by = list(recs.items), [float(x) for x in recs.scores], rec.trained.name
    reasons = why_recommended(rec, new, items, tables=state.why)
    plain_whys = _plain_whys(rec, state, items, liked, new.about)
    return NewUserRecommendResponse(
        score_kind=rec.model.score_kind,
        ranked_by=ranked_by,
        stars_by=rec.trained.name if rec.model.score_kind == "rating" else None,
        ratings=[
            RatedEntry(item=plain(i), title=rec.title(i), rating=float(r)) for i, r in new.rated.items()
        ],
        ignored=[plain(i) for i in new.ignored],
        recommendations=[
            NewUserEntry(
                item=plain(i), title=rec.title(i), rating=s,
                why=WhyEntry(
                    text=p.text, liked=p.liked, bias=w.bias,
                    closest=[
                        CloseRatedEntry(item=plain(c.item), title=c.title, similarity=c.similarity,
                                        your_rating=c.your_rating)
                        for c in w.closest
                    ],
                ),
            )
            for i, s, w, p in zip(items, scores, reasons, plain_whys, strict=True)
        ],
    )  # fmt: skip


def _plain_whys(
    rec: Recommender, state: ServiceState, items: list[Any], liked: dict[Any, float],
    about: dict[str, Any] | None = None,
) -> list[WhyEntry]:  # fmt: skip
    """Each item's reason in plain words: the liked items closest to it (see `blend.closest_liked`)."""
    liked_ids = list(liked)
    rec_idx = rec.items.encode(items, "error") if items else np.zeros(0, dtype=np.int64)
    liked_idx = rec.items.encode(liked_ids, "error") if liked_ids else np.zeros(0, dtype=np.int64)
    out = []
    for row in closest_liked(state.reason_unit, rec_idx, liked_idx):
        near = [liked_ids[p] for p, _ in row]
        out.append(
            WhyEntry(
                text=plain_reason([rec.title(i) for i in near], len(liked_ids), about),
                liked=[
                    CloseRatedEntry(item=plain(liked_ids[p]), title=rec.title(liked_ids[p]), similarity=sim,
                                    your_rating=float(liked[liked_ids[p]]))
                    for p, sim in row
                ],
                bias=None, closest=[],
            )
        )  # fmt: skip
    return out


Genre = Annotated[str | None, Query(max_length=100, description="Only items of this genre.")]
YearMin = Annotated[int | None, Query(ge=0, le=9999, description="Only titles naming this year or later.")]
YearMax = Annotated[int | None, Query(ge=0, le=9999, description="Only titles naming this year or earlier.")]
MinCount = Annotated[
    int, Query(ge=1, le=MAX_COUNT, description="Only items with this many training ratings.")
]
Exclude = Annotated[
    list[str], Query(max_length=MAX_EXCLUDED, description="Items never to return (not interested).")
]


@router.get("/popular", response_model=PopularResponse, responses=ERRORS)
async def popular(
    rec: Rec,
    state: State,
    n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 10,
    genre: Genre = None,
    year_min: YearMin = None,
    year_max: YearMax = None,
    min_count: MinCount = MIN_COUNT,
    exclude: Exclude = [],  # noqa: B006 (FastAPI copies a default)
) -> PopularResponse:
    """The most rated items (by training ratings), filtered: what "popular" means on the page."""
    allow = state.allowed(genre, year_min, year_max, min_count)
    ok = None if allow is None else set(allow)
    skip = {rec.parse_item(x) for x in exclude}
    order = np.argsort(-state.trained_counts, kind="stable")
    rows = []
    for k in order:
        item = state.item_ids[k]
        if item in skip or (ok is not None and item not in ok):
            continue
        rows.append(
            CatalogueEntry(item=plain(item), title=state.titles[k], n_ratings=int(state.trained_counts[k]),
                           mean_rating=plain(float(state.trained_means[k])))
        )  # fmt: skip
        if len(rows) == n:
            break
    return PopularResponse(definition="the most training ratings", items=rows)


@router.get("/users", response_model=UsersResponse, responses=INVALID)
async def users(
    rec: Rec,
    q: Annotated[str, Query(max_length=200, description="Text the user id starts with; empty: all.")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
) -> UsersResponse:
    """Users with training ratings whose id starts with `q`, the most active first."""
    counts = rec.user_counts.cpu().numpy()
    needle = q.strip().casefold()
    hits = [
        u for u in np.flatnonzero(counts > 0) if u and str(rec.users[int(u)]).casefold().startswith(needle)
    ]
    hits.sort(key=lambda u: (-int(counts[u]), int(u)))
    return UsersResponse(
        total=len(hits),
        users=[UserEntry(user=plain(rec.users[int(u)]), n_ratings=int(counts[u])) for u in hits[:limit]],
    )


@router.get("/profile", response_model=ProfileResponse, responses=ERRORS)
async def profile(
    user: UserText,
    rec: Rec,
    state: State,
    n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 10,
    genre: Genre = None,
    year_min: YearMin = None,
    year_max: YearMax = None,
    min_count: MinCount = MIN_COUNT,
    exclude: Exclude = [],  # noqa: B006 (FastAPI copies a default)
) -> ProfileResponse:
    """A known user's training ratings (best first) beside their recommendations, each with a why.

    Ordered as `POST /recommend` orders a new user's list: by the ranking model beside a rating model.
    """
    uid = rec.parse_user(user)
    u = int(rec.users.encode([uid], "na")[0])
    if u == 0 or int(rec.user_counts[u]) == 0:
        rec.recommend(uid, 1)  # the library's own one-line refusal of an untrained user
    items_idx, ys = rec.trained.seen.row(u)
    history = sorted(
        ((rec.items[int(i)], float(y)) for i, y in zip(items_idx.tolist(), ys.tolist(), strict=True)),
        key=lambda p: (-p[1], rec.title(p[0])),
    )
    liked = {i: r for i, r in history if r >= state.scale.liked}
    allow = state.allowed(genre, year_min, year_max)  # min_count: the library's
    skip = [rec.parse_item(x) for x in exclude]
    ranker = state.ranker.rec if state.ranker is not None else rec
    if allow is not None and not allow:
        items, scores = [], []
    else:
        order = ranker.recommend(uid, n, min_count=min_count, items=allow, exclude=skip or None)
        items = list(order.items)
        if rec.model.score_kind == "rating" and items:
            scores = [float(x) for x in rec.predict(users=[uid] * len(items), items=items)]
        else:
            scores = [float(x) for x in order.scores]
    bias = state.why.bias
    whys = _plain_whys(rec, state, items, liked)
    for w, i in zip(whys, items, strict=True):
        w.bias = None if bias is None else float(bias[state.item_index(i)])
    return ProfileResponse(
        user=plain(uid),
        n_ratings=len(history),
        ratings=[RatedEntry(item=plain(i), title=rec.title(i), rating=r) for i, r in history[:MAX_HISTORY]],
        score_kind=rec.model.score_kind,
        ranked_by=ranker.trained.name,
        stars_by=rec.trained.name if rec.model.score_kind == "rating" else None,
        recommendations=[
            NewUserEntry(item=plain(i), title=rec.title(i), rating=s, why=w)
            for i, s, w in zip(items, scores, whys, strict=True)
        ],
    )


@router.get("/catalogue", response_model=CatalogueResponse, responses=INVALID)
async def catalogue(state: State) -> CatalogueResponse:
    """What the page's filters offer, what its items are called, the rating scale, and the ranking
    model fitted beside a rating model (with its start-up cost)."""
    ranker = state.ranker
    return CatalogueResponse(
        kind=state.kind,
        scale=ScaleEntry(**state.scale.to_dict()),
        **state.catalogue(),
        ranker=None if ranker is None else RankerEntry(family=ranker.name, seconds=round(ranker.seconds, 3)),
        about=[
            AboutEntry(name=c.name, kind=c.kind, levels=c.levels) for c in state.rec.model.user_side_columns()
        ],
    )


@router.get("/similar", response_model=SimilarResponse, responses=ERRORS, **requires("item_vectors"))
async def similar(
    item: ItemText,
    rec: Rec,
    state: State,
    n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 5,
    min_count: Annotated[
        int, Query(ge=1, le=MAX_COUNT, description="Only neighbours with at least this many ratings.")
    ] = MIN_COUNT,
) -> SimilarResponse:
    """The n items whose vectors point most nearly the same way (cosine similarity)."""
    iid = rec.parse_item(item)
    near = rec.similar_items(iid, n, min_count=min_count)
    return SimilarResponse(
        item=plain(iid),
        title=rec.title(iid),
        n_ratings=int(state.counts[state.item_index(iid)]),
        min_count=min_count,
        similar_items=[
            SimilarEntry(
                item=plain(i), title=t, score=float(s), n_ratings=int(state.counts[state.item_index(i)])
            )
            for i, t, s in zip(near.items, near.titles, near.scores, strict=True)
        ],
    )


@router.get("/predict", response_model=PredictResponse, responses=ERRORS, **requires("ratings"))
async def predict(
    user: UserText,
    item: ItemText,
    rec: Rec,
    when: Annotated[
        str | None,
        Query(
            max_length=40,
            description="The rating's time, Unix seconds or a date (1998-03-14), for a model with day "
            "effects; without it, a rating at no particular day.",
        ),
    ] = None,
) -> PredictResponse:
    """The rating the model predicts `user` gives `item`."""
    uid, iid = rec.parse_user(user), rec.parse_item(item)
    rating = float(rec.predict(users=[uid], items=[iid], when=None if when is None else [when])[0])
    return PredictResponse(user=plain(uid), item=plain(iid), title=rec.title(iid), rating=rating)


@router.get("/items", response_model=ItemsResponse, responses=INVALID)
async def items(
    state: State,
    q: Annotated[
        str, Query(max_length=200, description="Text the title contains (any case); empty: all.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
) -> ItemsResponse:
    """Items with training ratings whose title contains `q`, most rated first."""
    hits, total = search_titles(state.titles, state.trained_counts, q, limit)
    return ItemsResponse(
        q=q,
        total=total,
        items=[
            CatalogueEntry(
                item=plain(state.item_ids[k]),
                title=state.titles[k],
                n_ratings=int(state.trained_counts[k]),
                mean_rating=plain(float(state.trained_means[k])),
            )
            for k in hits
        ],
    )


@router.get("/explain", response_model=ExplainResponse, responses=ERRORS, **requires("explain"))
async def explain(
    user: UserText,
    item: ItemText,
    rec: Rec,
    top: Annotated[int, Query(ge=1, le=MAX_RESULTS, description="Factor products listed one by one.")] = 5,
) -> ExplainResponse:
    """A predicted rating split into the biases and the largest factor products (dot models)."""
    uid, iid = rec.parse_user(user), rec.parse_item(item)
    e = interpret.explain_prediction(rec.trained, uid, iid)
    products = np.asarray(e.factor_products, dtype=np.float64)
    order = np.argsort(-np.abs(products), kind="stable")
    shown, rest = order[:top], order[top:]
    return ExplainResponse(
        user=plain(e.user),
        item=plain(e.item),
        title=e.title,
        rating=float(e.rating),
        raw=float(e.raw),
        offset=float(e.offset),
        user_bias=float(e.user_bias),
        item_bias=float(e.item_bias),
        dot=float(products.sum()),
        top_factors=[FactorEntry(factor=int(k), value=float(products[k])) for k in shown],
        other_factors=float(products[rest].sum()),
        y_range=None if e.y_range is None else [float(v) for v in e.y_range],
        actual=None if e.actual is None else float(e.actual),
        notes=list(e.notes),
    )


@router.get("/map", response_model=MapResponse, responses=ERRORS, **requires("item_vectors"))
async def embedding_map(state: State) -> MapResponse:
    """The items on the first two principal components of their vectors, with titles and genres."""
    return MapResponse.model_validate(state.embedding_map())


@router.get("/biases", response_model=BiasesResponse, responses=ERRORS, **requires("biases"))
async def biases(
    rec: Rec,
    n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 10,
    min_count: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_COUNT,
            description="Only items with this many ratings; default: 20, or fewer for a small catalogue.",
        ),
    ] = None,
) -> BiasesResponse:
    """The items most and least liked beyond anyone's taste (the highest and lowest item biases)."""
    if min_count is None:
        min_count = bias_min_count(rec)
    table = interpret.item_biases(rec.trained, n, min_count)
    rows: dict[str, list[BiasEntry]] = {"highest": [], "lowest": []}
    for r in table.to_dict("records"):
        rows[r["side"]].append(
            BiasEntry(item=plain(r["item"]), title=str(r["title"]), bias=float(r["bias"]),
                      n_ratings=int(r["n_ratings"]), mean_rating=plain(r["mean_rating"]))
        )  # fmt: skip
    return BiasesResponse(min_count=min_count, **rows)


@router.get("/model", response_model=ModelResponse, responses=INVALID)
async def model_info(rec: Rec, state: State) -> ModelResponse:
    """The model's settings, training data, held-out figures and epoch history."""
    t = rec.trained
    # no config: your own module (collabkit.models.custom), whose settings live in your code
    config = {} if t.config is None else plain(t.config.to_dict())
    settings = {} if t.config is None else plain(type(rec.model).describe_config(t.config))
    return ModelResponse(
        model=t.name,
        score_kind=rec.model.score_kind,
        capabilities=state.capabilities.to_dict(),
        settings=settings,
        config=config,
        data=None if t.data is None else plain(t.data),
        results=plain(t.results),
        history=plain(list(t.history)),
    )
