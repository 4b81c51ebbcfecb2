"""Whole jobs the command runs: train on a split and save; evaluate a saved model on a split."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from collabkit.collab import collab_learner
from collabkit.data.loaders import CollabDataLoaders
from collabkit.data.splits import make_split
from collabkit.errors import CollabkitError
from collabkit.evaluate import evaluate_model
from collabkit.models import check_model_name
from collabkit.train import distributed
from collabkit.train.learner import set_seed

STEP_KINDS = ("auto", "fused", "autograd")


@dataclass(frozen=True)
class Recipe:
    """Batch size, epochs, peak learning rate and weight decay of a one-cycle run."""

    bs: int
    epochs: int
    lr: float
    wd: float


CHAPTER = Recipe(bs=64, epochs=5, lr=5e-3, wd=0.1)  # fastbook chapter 8's settings
# Tuned on ML-100k's random 20% split (seed 42): see bench/speed.py and the speed issue's note.
# Raising the learning rate with the batch overfits; a moderate batch and one more epoch do not.
FAST = {
    "dot": Recipe(bs=768, epochs=6, lr=5e-3, wd=0.1),
    "dotbias": Recipe(bs=768, epochs=6, lr=5e-3, wd=0.1),
    "nn": Recipe(bs=512, epochs=5, lr=5e-3, wd=0.1),
    "classifier": Recipe(bs=512, epochs=5, lr=5e-3, wd=0.1),
}


def resolve_recipe(
    model: str,
    bs: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    wd: float | None = None,
) -> Recipe:
    """The settings to train with: the user's where given; the rest from the model's fast recipe
    when no batch size is given, else from the chapter's."""
    base = FAST[check_model_name(model)] if bs is None else CHAPTER
    return Recipe(
        bs=base.bs if bs is None else bs,
        epochs=base.epochs if epochs is None else epochs,
        lr=base.lr if lr is None else lr,
        wd=base.wd if wd is None else wd,
    )


def resolve_device(device: str) -> str:
    """`device` if this machine has it; a clear error when CUDA is asked for and absent."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CollabkitError(
            f"device {device!r} asked for, but PyTorch sees no CUDA GPU here; use --device cpu"
        )
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise CollabkitError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")
    return device


def train_model(
    *,
    data: pd.DataFrame,
    data_name: str,
    model: str = "dotbias",
    n_factors: int = 50,
    layers: list[int] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    wd: float | None = None,
    bs: int | None = None,
    y_range: tuple[float, float] | None = (0.0, 5.5),
    split: str = "random",
    valid_pct: float = 0.2,
    seed: int = 42,
    split_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    step: str = "auto",
) -> dict[str, Any]:
    """Train `model` with one-cycle on a split of `data`, evaluate it, save it to `out` if given.

    `step`: "fused" (the hand-written step of the dot models), "autograd" (the general loop), or
    "auto" (fused where it applies).
    """
    if step not in STEP_KINDS:
        raise CollabkitError(f"unknown step {step!r}; expected one of: {', '.join(STEP_KINDS)}")
    check_model_name(model)
    recipe = resolve_recipe(model, bs, epochs, lr, wd)
    bs, epochs, lr, wd = recipe.bs, recipe.epochs, recipe.lr, recipe.wd
    device = distributed.init_from_env(resolve_device(device))
    main = distributed.is_main()
    log = log if main else None
    set_seed(seed)
    dls = CollabDataLoaders.from_df(
        data,
        user_name="user",
        item_name="item",
        rating_name="rating",
        valid_pct=valid_pct,
        seed=seed,
        bs=bs,
        split=split,
        **{k: v for k, v in (split_kwargs or {}).items() if v is not None},
    )
    learn = collab_learner(
        dls,
        model=model,
        n_factors=n_factors,
        layers=layers,
        y_range=y_range,
        device=device,
        log=log,
        show_progress=log is not None,
        fused={"auto": None, "fused": True, "autograd": False}[step],
    )
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, lr, wd=wd)
    fit_seconds = time.perf_counter() - start
    valid = evaluate_model(learn.model, dls.valid.x, dls.valid.y)
    result: dict[str, Any] = {
        "model": model,
        "data": data_name,
        "source": data.attrs.get("source", data_name),
        "split": split,
        "n_train": int(dls.train.n),
        "n_valid": int(dls.valid.n),
        "valid": valid,
        "fit_seconds": fit_seconds,
        "epochs": [dict(row) for row in learn.history],
        "settings": {
            "n_factors": n_factors,
            "layers": layers,
            "epochs": epochs,
            "lr": lr,
            "wd": wd,
            "bs": bs,
            "y_range": y_range,
            "valid_pct": valid_pct,
            "seed": seed,
            "device": device,
        },
        "world_size": distributed.world_size(),
        "out": None,
    }
    if out is not None and main:
        from collabkit.persist import save_learner

        result["out"] = str(save_learner(learn, out, meta={k: v for k, v in result.items() if k != "out"}))
    return result


def evaluate_saved(
    model_dir: str | Path,
    table: pd.DataFrame,
    split: str,
    *,
    valid_pct: float = 0.2,
    seed: int = 42,
    split_kwargs: dict[str, Any] | None = None,
    ranking_k: int | None = None,
    relevant_threshold: float = 4.0,
) -> dict[str, Any]:
    """Metrics of a saved model on the held-out rows of `split` of `table`.

    Rows whose user or item the model never saw are scored at the `#na#` index (as fastai does)
    and counted in `unknown`, so an evaluation on a different split is not silently flattered.
    With `ranking_k`, the same model and rows also give `collabkit.ranking.evaluate_ranking`.
    """
    from collabkit.persist import load_model

    saved = load_model(model_dir)
    kw = {k: v for k, v in (split_kwargs or {}).items() if v is not None}
    _, valid_rows = make_split(table, split, valid_pct=valid_pct, seed=seed, **kw)
    rows = table.iloc[valid_rows]
    u = saved.users.encode(rows["user"])
    i = saved.items.encode(rows["item"])
    x = torch.from_numpy(np.stack([u, i], axis=1))
    y = torch.tensor(rows["rating"].to_numpy(dtype="float32"))
    metrics = evaluate_model(saved.model, x, y)
    result: dict[str, Any] = {
        "model_dir": str(model_dir),
        "split": split,
        "metrics": {k: v for k, v in metrics.items() if k != "n"},
        "n": int(len(y)),
        "unknown": int(((u == 0) | (i == 0)).sum()),
    }
    if ranking_k is not None:
        from collabkit.ranking import evaluate_ranking

        result["ranking"] = evaluate_ranking(saved, rows, k=ranking_k, relevant_threshold=relevant_threshold)
    return result
