"""`collab_learner`: the chapter's one-line way to build a model and its Learner from data loaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from collabkit.data.loaders import CollabDataLoaders
from collabkit.models import ModelConfig, RatingCrossEntropy, build_model, check_model_name
from collabkit.models.core import get_emb_sz
from collabkit.train.learner import Learner, default_metrics


def collab_config(
    dls: CollabDataLoaders,
    model: str = "dotbias",
    n_factors: int = 50,
    y_range: tuple[float, float] | None = None,
    layers: Sequence[int] | None = None,
    emb_szs: Mapping[str, int] | None = None,
    ps: Sequence[float] = (),
    embed_p: float = 0.0,
) -> ModelConfig:
    """The ModelConfig that `collab_learner` would build for `dls`."""
    check_model_name(model)
    sizes = get_emb_sz(dls, emb_szs) if model in ("nn", "classifier") else None
    return ModelConfig(
        model=model,
        n_users=dls.n_users,
        n_items=dls.n_items,
        n_factors=n_factors,
        y_range=None if model == "classifier" else y_range,
        layers=list(layers) if layers is not None else [100, 50],
        emb_szs=sizes,
        ps=list(ps),
        embed_p=embed_p,
        levels=dls.rating_levels() if model == "classifier" else None,
    )


def collab_learner(
    dls: CollabDataLoaders,
    n_factors: int = 50,
    use_nn: bool = False,
    emb_szs: Mapping[str, int] | None = None,
    layers: Sequence[int] | None = None,
    y_range: tuple[float, float] | None = None,
    loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    model: str | None = None,
    ps: Sequence[float] = (),
    embed_p: float = 0.0,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner for a built-in model, as fastai's `collab_learner`.

    `use_nn=True` gives the deep network (`EmbeddingNN`), else the bias model (`EmbeddingDotBias`);
    `model=` picks any built-in by name: "dot", "dotbias", "nn" or "classifier". The learner keeps
    its `config`, so `learn.export(path)` can save it.
    """
    name = model or ("nn" if use_nn else "dotbias")
    config = collab_config(dls, name, n_factors, y_range, layers, emb_szs, ps, embed_p)
    net = build_model(config)
    if loss_func is None and name == "classifier":
        assert config.levels is not None
        loss_func = RatingCrossEntropy(config.levels)
    learner_kwargs.setdefault("metrics", default_metrics(net))
    learn = Learner(dls, net, loss_func=loss_func, **learner_kwargs)
    learn.config = config  # type: ignore[attr-defined]
    return learn
