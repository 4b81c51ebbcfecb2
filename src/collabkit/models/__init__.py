"""Model families by name, under one protocol (`collabkit.models.base.CollabModel`).

Importing this package registers the built-in families; a family added later is one file that
subclasses `CollabModel` and is decorated with `@register("name")`.
"""

from __future__ import annotations

from collabkit.defaults import ModelName
from collabkit.models.base import (
    Capabilities,
    CollabModel,
    DotTables,
    Explanation,
    ModelConfig,
    build_model,
    check_model_name,
    family,
    model_names,
    nearest_level,
    predict_ratings,
    register,
)
from collabkit.models.core import Embedding, Module, emb_sz_rule, get_emb_sz, sigmoid_range
from collabkit.models.settings import FamilySettings, Recipe

# registration order is the order models are listed in
from collabkit.models.dot import DotProduct, EmbeddingDotBias  # isort: skip
from collabkit.models.nn import EmbeddingNN  # isort: skip
from collabkit.models.classifier import RatingClassifier, RatingCrossEntropy  # isort: skip
from collabkit.models.hybrid import HybridNN as HybridNN  # isort: skip
from collabkit.models.ease import EASE as EASE  # isort: skip
from collabkit.models.popular import Popular as Popular  # isort: skip
from collabkit.models.knn import ItemKNN as ItemKNN, UserKNN as UserKNN  # isort: skip
from collabkit.models.ials import ImplicitALS as ImplicitALS  # isort: skip
from collabkit.models.blend import EASEUserKNN as EASEUserKNN  # isort: skip
from collabkit.models.bpr import BPR as BPR  # isort: skip
from collabkit.models.als import BiasedALS as BiasedALS  # isort: skip
from collabkit.models.bayes import BayesianMF as BayesianMF  # isort: skip
from collabkit.models.stacking import Blend as Blend  # isort: skip


__all__ = [
    "Capabilities",
    "FamilySettings",
    "Recipe",
    "CollabModel",
    "DotProduct",
    "DotTables",
    "Embedding",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "Explanation",
    "ModelConfig",
    "ModelName",
    "Module",
    "RatingClassifier",
    "RatingCrossEntropy",
    "build_model",
    "check_model_name",
    "emb_sz_rule",
    "family",
    "get_emb_sz",
    "model_names",
    "nearest_level",
    "predict_ratings",
    "register",
    "sigmoid_range",
]
