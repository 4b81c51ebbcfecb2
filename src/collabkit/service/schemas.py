"""The service's request and response bodies (pydantic), and its per-request caps.

Names end in `Request`, `Response` or `Entry` (a row of a response), so none clashes with the
library's result types (`Recommendations`, `Explanation`, `EmbeddingMap`, ...) in a file that
imports both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from collabkit.defaults import MIN_COUNT

MAX_RESULTS = 100  # the longest list one request may ask for (the library allows 10,000)
MAX_BODY_RATINGS = 200  # the most ratings one request may send for a new user
MAX_BODY_BYTES = 64 * 1024  # the largest request body
MAX_SEARCH_RESULTS = 100  # the most titles one search returns
MAP_POINTS = 1000  # the chapter maps the 1000 most rated items
MAX_EXCLUDED = 500  # the most "not interested" items one request may name
MAX_ABOUT = 50  # the most side columns one new user may state
MAX_HISTORY = 50  # the most of a known user's training ratings one profile lists
MAX_COUNT = 2**31 - 1  # the largest count a request may name (`min_count`): beyond it, 422, not an overflow

ItemId = int | str


class HealthResponse(BaseModel):
    status: str
    model: str
    n_items: int = Field(description="Items with training ratings: the catalogue that can be recommended.")
    n_users: int
    score_kind: str = Field(description="'rating' (predicted stars) or 'score' (a ranking model's score).")
    capabilities: dict[str, bool] = Field(
        description="What the model's family can answer; a route needing a missing one answers 422."
    )
    version: str


class RecommendedEntry(BaseModel):
    item: ItemId
    title: str
    rating: float = Field(
        description="Predicted rating, clipped to the training ratings' range (a ranking model's score "
        "where score_kind says so)."
    )


class RatedEntry(BaseModel):
    item: ItemId
    title: str
    rating: float


class CloseRatedEntry(BaseModel):
    item: ItemId
    title: str
    similarity: float
    your_rating: float


class WhyEntry(BaseModel):
    text: str = Field("", description="The reason in plain words, from the liked items closest to it.")
    liked: list[CloseRatedEntry] = Field(
        default_factory=list,
        description="The user's liked items (rated in the top 40% of the scale) closest to this one.",
    )
    bias: float | None = Field(
        description="The item's bias: liked (or not) beyond anyone's taste; null: the model has no biases."
    )
    closest: list[CloseRatedEntry] = Field(
        description="The rated items whose vectors point most nearly its way (none without item vectors)."
    )


class NewUserEntry(RecommendedEntry):
    why: WhyEntry


class RecommendResponse(BaseModel):
    user: ItemId | None = None
    score_kind: str
    min_count: int = Field(MIN_COUNT, description="Only items with at least this many training ratings.")
    recommendations: list[RecommendedEntry]


class NewUserRecommendResponse(BaseModel):
    score_kind: str
    ranked_by: str = Field("", description="The family whose scores ordered the list.")
    stars_by: str | None = Field(
        None, description="The family whose predicted ratings `rating` holds (null: scores, not stars)."
    )
    ratings: list[RatedEntry]
    ignored: list[ItemId] = Field(description="Rated items the model has no training ratings for.")
    recommendations: list[NewUserEntry]


class RatingsRequest(BaseModel):
    """A new user's ratings, by item id or title, and how many recommendations to return."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN or infinity: 422
    ratings: dict[str, float] = Field(max_length=MAX_BODY_RATINGS, examples=[{"Star Wars (1977)": 5}])
    about: dict[str, str | float] = Field(
        default_factory=dict,
        max_length=MAX_ABOUT,
        description="The user's side columns, for a model that reads them (hybrid).",
        examples=[{"age": 25, "gender": "F"}],
    )
    n: int = Field(10, ge=1, le=MAX_RESULTS)
    exclude: list[str] = Field(
        default_factory=list, max_length=MAX_EXCLUDED, description="Items never to return (not interested)."
    )
    genre: str | None = Field(None, max_length=100, description="Only items of this genre.")
    year_min: int | None = Field(None, ge=0, le=9999, description="Only titles naming this year or later.")
    year_max: int | None = Field(None, ge=0, le=9999, description="Only titles naming this year or earlier.")
    min_count: int = Field(
        MIN_COUNT, ge=1, le=MAX_COUNT, description="Only items with at least this many training ratings."
    )


class SimilarEntry(BaseModel):
    item: ItemId
    title: str
    score: float = Field(description="Cosine similarity of the item vectors.")
    n_ratings: int


class SimilarResponse(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    min_count: int = Field(description="Only neighbours with at least this many training ratings.")
    similar_items: list[SimilarEntry]


class PredictResponse(BaseModel):
    user: ItemId
    item: ItemId
    title: str
    rating: float = Field(description="Predicted rating, clipped to the training ratings' range.")


class CatalogueEntry(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    mean_rating: float | None


class ItemsResponse(BaseModel):
    q: str
    total: int = Field(description="How many items match, of which `items` lists the most rated.")
    items: list[CatalogueEntry]


class PopularResponse(BaseModel):
    definition: str = Field(description="What 'popular' means here: the most training ratings.")
    items: list[CatalogueEntry]


class UserEntry(BaseModel):
    user: ItemId
    n_ratings: int


class UsersResponse(BaseModel):
    total: int = Field(description="Users with training ratings matching `q`.")
    users: list[UserEntry] = Field(description="The most active first.")


class ProfileResponse(BaseModel):
    user: ItemId
    n_ratings: int = Field(description="The user's training ratings, of which `ratings` lists the best.")
    ratings: list[RatedEntry]
    score_kind: str
    ranked_by: str
    stars_by: str | None
    recommendations: list[NewUserEntry]


class ScaleEntry(BaseModel):
    low: float
    high: float
    step: float
    liked: float = Field(description="The lowest rating counted as liked in the reasons.")


class RankerEntry(BaseModel):
    family: str
    seconds: float = Field(description="Building and fitting it at start-up, in seconds.")


class AboutEntry(BaseModel):
    name: str
    kind: str = Field(description="'category' (one of levels), 'number' (levels are its bins), or 'tags'.")
    levels: list[str]


class CatalogueResponse(BaseModel):
    kind: str = Field(description="'movie' for MovieLens data, else 'item'.")
    scale: ScaleEntry
    genres: list[str]
    year_min: int | None
    year_max: int | None
    min_count: int = Field(
        MIN_COUNT, description="The training ratings an item needs to be an answer unless a request says."
    )
    ranker: RankerEntry | None = Field(
        description="The ranking model fitted beside a rating model to order new users' lists (null: none)."
    )
    about: list[AboutEntry] = Field(
        default_factory=list,
        description="The side columns a new user may state in POST /recommend's `about` (hybrid models).",
    )


class FactorEntry(BaseModel):
    factor: int
    value: float


class ExplainResponse(BaseModel):
    user: ItemId
    item: ItemId
    title: str
    rating: float
    raw: float
    offset: float
    user_bias: float
    item_bias: float
    dot: float
    top_factors: list[FactorEntry] = Field(description="The largest factor products, by size.")
    other_factors: float = Field(description="The sum of the other factor products.")
    y_range: list[float] | None
    actual: float | None
    notes: list[str]


class MapPointEntry(BaseModel):
    item: ItemId
    title: str
    n_ratings: int
    x: float
    y: float
    genres: list[str]


class MapAxisEntry(BaseModel):
    component: int
    variance_share: float
    low_end: list[str]
    high_end: list[str]


class MapResponse(BaseModel):
    points: list[MapPointEntry]
    axes: list[MapAxisEntry]
    genres: list[str] = Field(description="Every genre of the mapped items, most common first.")


class BiasEntry(BaseModel):
    item: ItemId
    title: str
    bias: float
    n_ratings: int
    mean_rating: float | None


class BiasesResponse(BaseModel):
    min_count: int
    highest: list[BiasEntry]
    lowest: list[BiasEntry]


class ModelResponse(BaseModel):
    model: str
    score_kind: str
    capabilities: dict[str, bool]
    settings: dict[str, Any] = Field(description="The settings this family uses, by name.")
    config: dict[str, Any]
    data: dict[str, Any] | None
    results: dict[str, Any]
    history: list[dict[str, Any]]


class FieldError(BaseModel):
    """One parameter or body field that failed validation."""

    loc: list[str | int] = Field(description="Where: 'query', 'body' and the field's path.")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error answer: one line in `detail`; the fields at fault (422) or the titles' items (404)."""

    detail: str = Field(description="What went wrong, in one line.")
    errors: list[FieldError] | None = Field(
        None, description="422 for bad parameters or body: each field at fault (absent otherwise)."
    )
    candidates: list[dict[str, Any]] | None = Field(
        None, description="404 for a title naming several items: those items (absent otherwise)."
    )


def error(description: str) -> dict[str, Any]:
    """One documented error response, in the one error body every error answer has."""
    return {"model": ErrorResponse, "description": description}


INVALID: dict[int | str, dict[str, Any]] = {
    422: error("Bad parameters or body (`errors` names each field), or a question the family cannot answer")
}
ERRORS: dict[int | str, dict[str, Any]] = {
    404: error("Unknown user or item, or a title naming several items (`candidates` lists them)"),
    **INVALID,
}
TOO_LARGE: dict[int | str, dict[str, Any]] = {413: error(f"Request body over {MAX_BODY_BYTES:,} bytes")}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: error("Missing or wrong API key or session")}
