"""Using a trained model: the `Recommender` facade, its top-N engine and its result types."""

from collabkit.recommend.engine import MAX_N, TopN, cosine_neighbours
from collabkit.recommend.recommender import Recommender
from collabkit.recommend.results import BatchRecommendations, NewUser, Recommendations, SimilarUsers

__all__ = [
    "MAX_N",
    "BatchRecommendations",
    "NewUser",
    "Recommendations",
    "Recommender",
    "SimilarUsers",
    "TopN",
    "cosine_neighbours",
]
