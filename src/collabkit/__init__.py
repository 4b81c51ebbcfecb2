"""collabkit: collaborative filtering on PyTorch, with fastbook chapter 8's names.

The chapter's code runs with its fastai imports replaced by these names.
"""

from __future__ import annotations

from collabkit.bundle import TrainedModel
from collabkit.collab import collab_config, collab_learner
from collabkit.data import load_ratings, read_ratings
from collabkit.data.loaders import CollabDataLoaders, DataLoader
from collabkit.data.splits import (
    SplitSpec,
    kfold,
    last_n_per_user,
    make_split,
    ml100k_split,
    random_split,
    time_cutoff,
)
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError, DataError, UnknownIdError
from collabkit.evaluate import evaluate_model, mae, mse, rmse
from collabkit.models import (
    CollabModel,
    DotProduct,
    Embedding,
    EmbeddingDotBias,
    EmbeddingNN,
    ModelConfig,
    Module,
    RatingClassifier,
    RatingCrossEntropy,
    build_model,
    get_emb_sz,
    model_names,
    predict_ratings,
    register,
    sigmoid_range,
)
from collabkit.models.core import SigmoidRange, emb_sz_rule, one_hot, pca, trunc_normal_
from collabkit.persist import load_model, save_model
from collabkit.recommend import Recommender
from collabkit.train.learner import Learner, MSELossFlat, set_seed
from collabkit.train.schedule import one_cycle_lr, one_cycle_mom

__version__ = "0.1.0"


def load_movielens(name: str, **kwargs):  # type: ignore[no-untyped-def]
    """A MovieLens release by name as one tidy table; see `collabkit.data.datasets.load_movielens`."""
    from collabkit.data.datasets import load_movielens as _load

    return _load(name, **kwargs)


__all__ = [
    "CollabDataLoaders",
    "CollabModel",
    "CollabkitError",
    "DataError",
    "DataLoader",
    "DotProduct",
    "Embedding",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "Learner",
    "MSELossFlat",
    "ModelConfig",
    "Module",
    "RatingClassifier",
    "RatingCrossEntropy",
    "Recommender",
    "SigmoidRange",
    "SplitSpec",
    "TrainedModel",
    "UnknownIdError",
    "Vocab",
    "build_model",
    "collab_config",
    "collab_learner",
    "emb_sz_rule",
    "evaluate_model",
    "get_emb_sz",
    "kfold",
    "last_n_per_user",
    "load_model",
    "load_movielens",
    "load_ratings",
    "mae",
    "make_split",
    "ml100k_split",
    "model_names",
    "mse",
    "one_cycle_lr",
    "one_cycle_mom",
    "one_hot",
    "pca",
    "predict_ratings",
    "random_split",
    "read_ratings",
    "register",
    "rmse",
    "save_model",
    "set_seed",
    "sigmoid_range",
    "time_cutoff",
    "trunc_normal_",
]
