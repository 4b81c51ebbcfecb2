"""`collab_learner`: the chapter's one-line way to build a model and its Learner from data loaders."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from collabkit.data.loaders import CollabDataLoaders, DataLoader
from collabkit.errors import CollabkitError
from collabkit.models import CollabModel, ModelConfig, build_model, family
from collabkit.persist import load_model, load_module
from collabkit.train import args
from collabkit.train.learner import Learner, default_metrics

# what `**learner_kwargs` may hold: the Learner's own keyword arguments but the ones given here
LEARNER_KWARGS = tuple(
    p for p in inspect.signature(Learner.__init__).parameters if p not in ("self", "dls", "model")
)


def _check_model_name(model: object) -> None:
    """`model` must be a family's name (a string); `family` says which names exist."""
    if not isinstance(model, str):
        raise CollabkitError(f"model must be a family's name such as 'dotbias', got {args.shown(model)}")


def _check_learner_kwargs(where: str, given: Mapping[str, Any], taken: Sequence[str] = ("config",)) -> None:
    """Refuse a keyword the Learner does not take, listing those it does (not Learner's TypeError)."""
    allowed = [k for k in LEARNER_KWARGS if k not in taken]
    unknown = sorted(k for k in given if k not in allowed)
    if unknown:
        raise CollabkitError(
            f"{where}: unknown keyword argument {unknown[0]!r}; the Learner takes: {', '.join(allowed)}"
        )


def collab_config(
    dls: CollabDataLoaders,
    model: str = "dotbias",
    n_factors: int | None = None,
    y_range: tuple[float, float] | None = None,
    layers: Sequence[int] | None = None,
    emb_szs: Mapping[str, int] | None = None,
    ps: Sequence[float] | None = None,
    embed_p: float | None = None,
    **settings: Any,
) -> ModelConfig:
    """The ModelConfig that `collab_learner` builds for `dls`: the settings given (fastai's named
    ones and any other of the family's, by keyword), completed from the data (embedding sizes,
    rating levels). A setting the family does not take is an error that lists those it does."""
    named = {"n_factors": n_factors, "y_range": y_range, "layers": layers, "emb_szs": emb_szs,
             "ps": ps, "embed_p": embed_p}  # fmt: skip
    given = {k: (list(v) if isinstance(v, (list, tuple)) and k in ("layers", "ps") else v)
             for k, v in named.items() if v is not None}  # fmt: skip
    overlap = sorted(set(given) & set(settings))
    if overlap:
        raise CollabkitError(f"{model}: settings {overlap} given twice")
    _check_model_name(model)
    fam = family(model)
    values = fam.settings_from_data({**given, **settings}, dls)
    return ModelConfig(model, dls.n_users, dls.n_items, **values)


def collab_learner(
    dls: CollabDataLoaders,
    n_factors: int | None = None,
    use_nn: bool = False,
    emb_szs: Mapping[str, int] | None = None,
    layers: Sequence[int] | None = None,
    y_range: tuple[float, float] | None = None,
    loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    model: str | None = None,
    ps: Sequence[float] | None = None,
    embed_p: float | None = None,
    settings: Mapping[str, Any] | None = None,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner for a built-in model, as fastai's `collab_learner`.

    `use_nn=True` gives the deep network (`EmbeddingNN`), else the bias model (`EmbeddingDotBias`);
    `model=` picks any registered family by name (see `model_names()`), and `settings=` gives its
    own settings (e.g. `{"l2": 500}` for ease). A setting the family does not take is refused, so
    nothing is silently ignored. The learner keeps its `config`, so `learn.export(path)` can save it.
    """
    if model is not None:
        _check_model_name(model)
    name = model or ("nn" if args.flag("use_nn", use_nn) else "dotbias")
    if settings is not None and (
        not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings)
    ):
        raise CollabkitError(
            "settings must be a dict of setting name to value, e.g. {'l2': 500}, "
            f"got {args.shown(settings)}"
        )
    _check_learner_kwargs("collab_learner", learner_kwargs)
    extra = dict(settings or {})
    named = {"n_factors": n_factors, "y_range": y_range, "layers": layers, "emb_szs": emb_szs,
             "ps": ps, "embed_p": embed_p}  # fmt: skip
    twice = sorted(k for k, v in named.items() if v is not None and k in extra)
    if twice:
        raise CollabkitError(f"{name}: settings {twice} given both by name and in settings=")
    given: dict[str, Any] = {k: v for k, v in named.items() if k not in extra}
    config = collab_config(dls, name, **given, **extra)
    net = build_model(config)
    net.prepare(dls)  # what the family reads from the table besides the pairs (side columns)
    if loss_func is None:
        loss_func = net.default_loss()
    learner_kwargs.setdefault("metrics", default_metrics(net))
    learn = Learner(dls, net, loss_func=loss_func, config=config, **learner_kwargs)
    return learn


def load_learner(
    path: str | Path, model: nn.Module | None = None, cpu: bool = True, **learner_kwargs: Any
) -> Learner:
    """A Learner from a folder written by `learn.export`: it predicts as the exported one did, and
    trains on once given data (`learn.dls = dls`, then `fit_one_cycle`).

    A built-in model is rebuilt from its saved settings; for your own module pass an instance built
    as before (`model=MyModel(...)`), into which the weights are loaded (no pickle, no code from the
    file). Its data loaders hold the vocabularies and the training rows, and an empty validation set.
    """
    args.path("path", path)
    device = "cpu" if args.flag("cpu", cpu) else None
    if model is not None and not isinstance(model, nn.Module):
        raise CollabkitError(
            f"model must be a torch nn.Module built as when exported, got {args.shown(model)}"
        )
    _check_learner_kwargs("load_learner", learner_kwargs, taken=("device", "config"))
    if model is None:
        trained = load_model(path)
        net: nn.Module = trained.model
        users, items, x, y, history = (
            trained.users,
            trained.items,
            trained.train_x,
            trained.train_y,
            trained.history,
        )
        config: ModelConfig | None = trained.config
    else:
        users, items, x, y, history = load_module(path, model)
        net, config = model, None
    dls = CollabDataLoaders(
        DataLoader(x, y, bs=64, shuffle=True, seed=0, drop_last=len(y) > 64),
        DataLoader(x[:0], y[:0], bs=4096),
        {users.name: users, items.name: items},
        user_name=users.name,
        item_name=items.name,
        rating_name="rating",
    )
    loss_func = net.default_loss() if isinstance(net, CollabModel) else None
    learner_kwargs.setdefault("metrics", default_metrics(net))
    learner_kwargs.setdefault("log", None)
    learn = Learner(
        dls,
        net,
        loss_func=learner_kwargs.pop("loss_func", loss_func),
        device=device,
        config=config,
        **learner_kwargs,
    )
    learn.history = [dict(r) for r in history]
    learn.epoch = len(learn.history)
    return learn
