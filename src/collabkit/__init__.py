"""collabkit: collaborative filtering on PyTorch, with fastbook chapter 8's names.

The chapter's code runs with its fastai imports replaced by these names: `from collabkit import *`
gives what `from fastai.collab import *` gives a chapter reader (CollabDataLoaders, collab_learner,
load_learner, Learner, the models, the callbacks, get_emb_sz, sigmoid_range, Embedding, Module;
`movielens_path` is `untar_data(URLs.ML_100k)`), the chapter's own `create_params`, and `pca(t, 3)` for
its `t.pca(3)` (collabkit patches no torch class), plus collabkit's own (Recommender, TrainedModel,
load_ratings, SplitSpec, the errors, ...). Every public name is listed in `__all__`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from collabkit.version import __version__

# Every public name and the module that defines it. The package imports nothing at start-up, so
# `import collabkit.errors` or `collabkit --help` does not wait for torch; a name is imported the
# first time it is used (PEP 562), `from collabkit import *` included.
_EXPORTS: dict[str, str] = {
    "AmbiguousIdError": "collabkit.errors",
    "CSVLogger": "collabkit.train.callbacks",
    "Callback": "collabkit.train.callbacks",
    "CancelFitException": "collabkit.train.callbacks",
    "CollabDataLoaders": "collabkit.data.loaders",
    "CollabModel": "collabkit.models",
    "CollabkitError": "collabkit.errors",
    "DataError": "collabkit.errors",
    "DataLoader": "collabkit.data.loaders",
    "DotProduct": "collabkit.models",
    "EarlyStoppingCallback": "collabkit.train.callbacks",
    "Embedding": "collabkit.models",
    "EmbeddingDotBias": "collabkit.models",
    "EmbeddingNN": "collabkit.models",
    "Learner": "collabkit.train.learner",
    "MOVIELENS": "collabkit.data.datasets",
    "MSELossFlat": "collabkit.train.learner",
    "ModelConfig": "collabkit.models",
    "Module": "collabkit.models",
    "RatingClassifier": "collabkit.models",
    "RatingCrossEntropy": "collabkit.models",
    "Recommender": "collabkit.recommend",
    "SaveModelCallback": "collabkit.train.callbacks",
    "SigmoidRange": "collabkit.models.core",
    "SplitSpec": "collabkit.data.splits",
    "TrackerCallback": "collabkit.train.callbacks",
    "TrainedModel": "collabkit.bundle",
    "TuneResult": "collabkit.tuning",
    "UnknownIdEncoding": "collabkit.data.vocab",
    "UnknownIdError": "collabkit.errors",
    "UnknownIdPrediction": "collabkit.recommend.recommender",
    "Vocab": "collabkit.data.vocab",
    "build_model": "collabkit.models",
    "collab_config": "collabkit.collab",
    "collab_learner": "collabkit.collab",
    "create_params": "collabkit.models.core",
    "emb_sz_rule": "collabkit.models.core",
    "evaluate_model": "collabkit.scoring",
    "get_emb_sz": "collabkit.models",
    "kfold": "collabkit.data.splits",
    "last_n_per_user": "collabkit.data.splits",
    "load_learner": "collabkit.collab",
    "load_model": "collabkit.persist",
    "load_movielens": "collabkit.data.datasets",
    "load_ratings": "collabkit.data",
    "mae": "collabkit.evaluate",
    "make_split": "collabkit.data.splits",
    "ml100k_split": "collabkit.data.splits",
    "model_names": "collabkit.models",
    "movielens_path": "collabkit.data.datasets",
    "movielens_users": "collabkit.data.datasets",
    "mse": "collabkit.evaluate",
    "one_cycle_lr": "collabkit.train.schedule",
    "one_cycle_mom": "collabkit.train.schedule",
    "one_hot": "collabkit.models.core",
    "pca": "collabkit.models.core",
    "predict_ratings": "collabkit.models",
    "random_split": "collabkit.data.splits",
    "read_ratings": "collabkit.data",
    "register": "collabkit.models",
    "rmse": "collabkit.evaluate",
    "save_model": "collabkit.persist",
    "search_space": "collabkit.tuning",
    "set_seed": "collabkit.train.learner",
    "sigmoid_range": "collabkit.models",
    "time_cutoff": "collabkit.data.splits",
    "trunc_normal_": "collabkit.models.core",
    "tune": "collabkit.tuning",
}

if TYPE_CHECKING:  # what type checkers and editors see
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
    from collabkit.models.core import (
        SigmoidRange,
        create_params,
        emb_sz_rule,
        one_hot,
        pca,
        trunc_normal_,
    )
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
    from collabkit.tuning import TuneResult, search_space, tune


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
    "TuneResult",
    "UnknownIdEncoding",
    "UnknownIdPrediction",
    "UnknownIdError",
    "Vocab",
    "__version__",
    "build_model",
    "collab_config",
    "collab_learner",
    "create_params",
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
    "search_space",
    "set_seed",
    "sigmoid_range",
    "time_cutoff",
    "trunc_normal_",
    "tune",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use, and keep it."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'collabkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
