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

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

import collabkit.interpret as interpret
from collabkit.recommend.why import bias_min_count, why_recommended
from collabkit.service.deps import VERSION, Rec, State, StrictRoute, plain, requires, search_titles
from collabkit.service.schemas import (
    ERRORS,
    INVALID,
    MAX_COUNT,
    MAX_RESULTS,
    MAX_SEARCH_RESULTS,
    TOO_LARGE,
    BiasEntry,
    BiasesResponse,
    CatalogueEntry,
    CloseRatedEntry,
    ExplainResponse,
    FactorEntry,
    HealthResponse,
    ItemsResponse,
    MapResponse,
    ModelResponse,
    NewUserEntry,
    NewUserRecommendResponse,
    PredictResponse,
    RatedEntry,
    RatingsRequest,
    RecommendedEntry,
    RecommendResponse,
    SimilarEntry,
    SimilarResponse,
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
    recs = rec.recommend(uid, n)
    return RecommendResponse(
        user=plain(uid),
        score_kind=recs.score_kind,
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
    """Recommendations for a new user folded in from their ratings (titles or ids), each with a why."""
    new = rec.fold_in(body.ratings)
    recs = rec.recommend_for_ratings(new, body.n)
    reasons = why_recommended(rec, new, recs.items, tables=state.why)
    return NewUserRecommendResponse(
        score_kind=recs.score_kind,
        ratings=[
            RatedEntry(item=plain(i), title=rec.title(i), rating=float(r)) for i, r in new.rated.items()
        ],
        ignored=[plain(i) for i in new.ignored],
        recommendations=[
            NewUserEntry(
                item=plain(i), title=t, rating=float(s),
                why=WhyEntry(
                    bias=w.bias,
                    closest=[
                        CloseRatedEntry(item=plain(c.item), title=c.title, similarity=c.similarity,
                                        your_rating=c.your_rating)
                        for c in w.closest
                    ],
                ),
            )
            for i, t, s, w in zip(recs.items, recs.titles, recs.scores, reasons, strict=True)
        ],
    )  # fmt: skip


@router.get("/similar", response_model=SimilarResponse, responses=ERRORS, **requires("item_vectors"))
async def similar(
    item: ItemText,
    rec: Rec,
    state: State,
    n: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 5,
    min_count: Annotated[
        int, Query(ge=1, le=MAX_COUNT, description="Only neighbours with at least this many ratings.")
    ] = 1,
) -> SimilarResponse:
    """The n items whose vectors point most nearly the same way (cosine similarity)."""
    iid = rec.parse_item(item)
    near = rec.similar_items(iid, n, min_count=min_count)
    return SimilarResponse(
        item=plain(iid),
        title=rec.title(iid),
        n_ratings=int(state.counts[state.item_index(iid)]),
        similar_items=[
            SimilarEntry(
                item=plain(i), title=t, score=float(s), n_ratings=int(state.counts[state.item_index(i)])
            )
            for i, t, s in zip(near.items, near.titles, near.scores, strict=True)
        ],
    )


@router.get("/predict", response_model=PredictResponse, responses=ERRORS, **requires("ratings"))
async def predict(user: UserText, item: ItemText, rec: Rec) -> PredictResponse:
    """The rating the model predicts `user` gives `item`."""
    uid, iid = rec.parse_user(user), rec.parse_item(item)
    rating = float(rec.predict(users=[uid], items=[iid])[0])
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
