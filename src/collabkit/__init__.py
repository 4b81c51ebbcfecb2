"""collabkit: collaborative filtering on PyTorch, with fastbook chapter 8's names.

The chapter's code runs with its fastai imports replaced by these names: `from collabkit import *`
gives what `from fastai.collab import *` gives a chapter reader (CollabDataLoaders, collab_learner,
load_learner, Learner, the models, the callbacks, get_emb_sz, sigmoid_range, Embedding, Module;
`movielens_path` is `untar_data(URLs.ML_100k)`), plus collabkit's own (Recommender, TrainedModel,
load_ratings, SplitSpec, the errors, ...). Every public name is listed in `__all__`.
"""

from __future__ import annotations

from collabkit.bundle import TrainedModel
from collabkit.collab import collab_config, collab_learner, load_learner
from collabkit.data import load_ratings, read_ratings
from collabkit.data.datasets import MOVIELENS, load_movielens, movielens_path, movielens_users
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
from collabkit.data.vocab import UnknownIdEncoding, Vocab
from collabkit.errors import AmbiguousIdError, CollabkitError, DataError, UnknownIdError
from collabkit.evaluate import mae, mse, rmse
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
from collabkit.recommend.recommender import UnknownIdPrediction
from collabkit.scoring import evaluate_model
from collabkit.train.callbacks import (
    Callback,
    CancelFitException,
    CSVLogger,
    EarlyStoppingCallback,
    SaveModelCallback,
    TrackerCallback,
)
from collabkit.train.learner import Learner, MSELossFlat, set_seed
from collabkit.train.schedule import one_cycle_lr, one_cycle_mom

__version__ = "0.1.0"

__all__ = [
    "MOVIELENS",
    "AmbiguousIdError",
    "CSVLogger",
    "Callback",
    "CancelFitException",
    "CollabDataLoaders",
    "CollabModel",
    "CollabkitError",
    "DataError",
    "DataLoader",
    "DotProduct",
    "EarlyStoppingCallback",
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
    "SaveModelCallback",
    "SigmoidRange",
    "SplitSpec",
    "TrackerCallback",
    "TrainedModel",
    "UnknownIdEncoding",
    "UnknownIdPrediction",
    "UnknownIdError",
    "Vocab",
    "__version__",
    "build_model",
    "collab_config",
    "collab_learner",
    "emb_sz_rule",
    "evaluate_model",
    "get_emb_sz",
    "kfold",
    "last_n_per_user",
    "load_learner",
    "load_model",
    "load_movielens",
    "load_ratings",
    "mae",
    "make_split",
    "ml100k_split",
    "model_names",
    "movielens_path",
    "movielens_users",
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
