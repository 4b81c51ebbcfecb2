"""`collab_learner`: the chapter's one-line way to build a model and its Learner from data loaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from collabkit.data.loaders import CollabDataLoaders
from collabkit.models import ModelConfig, build_model, family
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
    options: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """The ModelConfig that `collab_learner` would build for `dls`; the family fills in what it
    takes from the data (embedding sizes, rating levels)."""
    settings: dict[str, Any] = {
        "model": model,
        "n_users": dls.n_users,
        "n_items": dls.n_items,
        "n_factors": n_factors,
        "y_range": y_range,
        "layers": list(layers) if layers is not None else [100, 50],
        "ps": list(ps),
        "embed_p": embed_p,
        "options": dict(options or {}),
    }
    return ModelConfig(**family(model).settings_from_data(settings, dls, emb_szs))


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
    options: Mapping[str, Any] | None = None,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner for a built-in model, as fastai's `collab_learner`.

    `use_nn=True` gives the deep network (`EmbeddingNN`), else the bias model (`EmbeddingDotBias`);
    `model=` picks any built-in by name: "dot", "dotbias", "nn" or "classifier". The learner keeps
    its `config`, so `learn.export(path)` can save it.
    """
    name = model or ("nn" if use_nn else "dotbias")
    config = collab_config(dls, name, n_factors, y_range, layers, emb_szs, ps, embed_p, options)
    net = build_model(config)
    if loss_func is None:
        loss_func = net.default_loss()
    learner_kwargs.setdefault("metrics", default_metrics(net))
    learn = Learner(dls, net, loss_func=loss_func, **learner_kwargs)
    learn.config = config  # type: ignore[attr-defined]
    return learn
