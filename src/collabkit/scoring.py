"""Held-out figures of a model on index pairs: the one scorer behind the epoch table and the run's
last line (and `evaluate`), so a run reports one answer.

A pair whose user or item has no training ratings is not scored with its untrained (random)
embedding: it is predicted by the biases-only baseline fitted on the training rows (the training mean
plus the damped bias of whichever side has ratings; the mean when neither has), and counted in
`fallback` (Surprise's `was_impossible`). So a model is never scored worse than the baseline on the
rows it cannot know, and the flag "does not beat biases-only" compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from collabkit.baselines import Biases, fit_biases
from collabkit.errors import CollabkitError
from collabkit.evaluate import mae, metric_name, mse, rmse
from collabkit.models import CollabModel
from collabkit.models.base import model_device
from collabkit.train.args import number, shown, whole

Metric = Callable[[Tensor, Tensor], float]
CHUNK = 65536  # pairs per forward pass: bounds the memory a scoring pass holds at once
OWN = ("mse", "rmse", "mae")  # the scorer's own figures; a metric of one of these names is not rerun


@dataclass(frozen=True)
class TrainingFacts:
    """What the scorer needs to know about the training rows: who was trained, and the mean."""

    user_counts: Tensor  # (n_users,) training ratings of each user index
    item_counts: Tensor  # (n_items,) training ratings of each item index
    mean: float  # the mean training rating
    biases: Biases | None = None  # the biases-only model: the answer for an untrained pair


def training_facts(train_x: Tensor, train_y: Tensor, n_users: int, n_items: int) -> TrainingFacts:
    """Counts per user and item index, and the mean rating, of training pairs `train_x` (N, 2)."""
    x = train_x.long()
    xs = x.cpu().numpy()
    return TrainingFacts(
        torch.bincount(x[:, 0], minlength=n_users),
        torch.bincount(x[:, 1], minlength=n_items),
        float(train_y.double().mean()) if len(train_y) else 0.0,
        fit_biases(xs[:, 0], xs[:, 1], train_y.double().cpu().numpy(), n_users, n_items),
    )


def fallback_mask(x: Tensor, user_counts: Tensor, item_counts: Tensor) -> Tensor:
    """(N,) True where the pair's user or item has no training ratings (or is `#na#`, index 0)."""
    u, i = x[:, 0].long(), x[:, 1].long()
    return ~(_trained(user_counts, u) & _trained(item_counts, i)) | (u == 0) | (i == 0)


def _trained(counts: Tensor, idx: Tensor) -> Tensor:
    counts = counts.to(idx.device)
    inside = idx < len(counts)  # an index past the counts has no training rows
    out = torch.zeros(len(idx), dtype=torch.bool, device=idx.device)
    out[inside] = counts[idx[inside]] > 0
    return out


def score_pairs(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    user_counts: Tensor,
    item_counts: Tensor,
    train_mean: float,
    *,
    bs: int = CHUNK,
    loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
    metrics: Sequence[Metric] | None = None,
    biases: Biases | None = None,
) -> dict[str, float]:
    """Rating error of `model` on pairs `x` (N, 2) against ratings `y` (N,).

    Args:
        user_counts, item_counts: training ratings per user / item index (a bool mask works too):
            a pair whose user or item has none is predicted by `biases` (the biases-only model of
            the training rows, see `training_facts`), or at `train_mean` without it.
        loss_func: also return `loss`, the training loss on these rows.
        metrics: the further metrics to compute (default: the model's own, e.g. a classifier's
            accuracy); one named mse, rmse or mae is the scorer's figure.

    Returns:
        mse, rmse, mae over all N rows (untrained pairs by `biases`, or the training mean); each
        further metric and the loss: over all rows when the model outputs ratings, else (a
        classifier's logits, which have no value for the fallback) over the trained pairs; `n` and
        `fallback` (how many rows were scored by the fallback).

    Raises:
        CollabkitError: the model ranks items (score_kind "score"): it predicts no ratings.
    """
    if isinstance(model, CollabModel) and model.score_kind != "rating":
        raise CollabkitError(
            f"model {model.name!r} ranks items; it predicts no ratings, so it has no rating error"
        )
    _check_pairs(model, x, y)
    for name, counts in (("user_counts", user_counts), ("item_counts", item_counts)):
        if not isinstance(counts, Tensor) or counts.ndim != 1:
            raise CollabkitError(
                f"{name} must be a 1-D tensor of training counts per index, got {shown(counts)}"
            )
    train_mean = number("train_mean", train_mean)
    bs = whole("bs", bs, 1)
    if loss_func is not None and not callable(loss_func):
        raise CollabkitError(f"loss_func must be callable, got {shown(loss_func)}")
    if metrics is not None and (
        isinstance(metrics, (str, bytes))
        or not isinstance(metrics, Sequence)
        or not all(callable(m) for m in metrics)
    ):
        raise CollabkitError(f"metrics must be a list of functions, got {shown(metrics)}")
    cold = fallback_mask(x.to(model_device(model)), user_counts, item_counts)
    if biases is not None and not isinstance(biases, Biases):
        raise CollabkitError(f"biases must be a Biases (baselines.fit_biases), got {shown(biases)}")
    fallback: Tensor | float = train_mean
    if biases is not None and bool(cold.any()):
        pairs = x[cold.cpu()].cpu().numpy()
        fallback = torch.from_numpy(biases.predict(pairs[:, 0], pairs[:, 1])).float()
    return _score(model, x, y, cold, fallback, bs, loss_func, metrics)


def _check_pairs(model: nn.Module, x: object, y: object) -> None:
    """`x` (N, 2) integer indices the model has, `y` (N,) finite ratings: else one line naming them."""
    if not isinstance(model, nn.Module):
        raise CollabkitError(f"model must be a torch nn.Module, got {shown(model)}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        bad = "x" if not isinstance(x, Tensor) else "y"
        got = shown(x if bad == "x" else y)
        raise CollabkitError(f"{bad} must be a tensor (x: (N, 2) index pairs, y: (N,) ratings), got {got}")
    width = 3 if getattr(model, "takes_days", False) else 2  # a model with day effects: (user, item, day)
    if x.ndim != 2 or x.shape[1] not in (2, width) or y.ndim != 1 or len(x) != len(y):
        raise CollabkitError(
            f"need index pairs x (N, 2) and ratings y (N,), got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise CollabkitError(f"x must hold integer indices, got dtype {x.dtype}")
    if len(y) and not bool(torch.isfinite(y.float()).all()):
        raise CollabkitError("y must hold finite ratings; it has NaN or infinite values")
    if len(x) and int(x[:, :2].min()) < 0:  # an index past the counts is untrained (the mean); below 0 wraps
        raise CollabkitError(f"x must hold indices of at least 0, got {int(x.min())}")


def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, bs: int = CHUNK) -> dict[str, float]:
    """MSE, RMSE and MAE of a model on index pairs `x` (N, 2) against ratings `y` (N,), and the
    model's own further metrics (a classifier's accuracy), every pair scored by the model.

    For held-out rows use `score_pairs`: it puts the training mean on untrained pairs.
    """
    _check_pairs(model, x, y)
    bs = whole("bs", bs, 1)
    cold = torch.zeros(len(y), dtype=torch.bool, device=model_device(model))
    res = _score(model, x, y, cold, 0.0, bs, None, None)
    return {k: v for k, v in res.items() if k != "fallback"}


@torch.inference_mode()
def _score(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cold: Tensor,
    fallback: Tensor | float,
    bs: int,
    loss_func: Callable[[Tensor, Tensor], Tensor] | None,
    metrics: Sequence[Metric] | None,
) -> dict[str, float]:
    """See `score_pairs`; `cold` (N,) marks the rows answered with `fallback` (a number, or one
    prediction per cold row)."""
    n = len(y)
    if metrics is None:
        metrics = model.default_metrics() if isinstance(model, CollabModel) else []
    device = model_device(model)
    x, y = x.to(device), y.to(device).float()
    warm = (~cold).nonzero().reshape(-1)
    out = _outputs(model, x[warm], bs)  # (W,), (W, 1) ratings or (W, L) logits: what forward returns
    preds = torch.zeros(n, dtype=torch.float32, device=device)
    preds[cold] = fallback.to(device) if isinstance(fallback, Tensor) else float(fallback)
    preds[warm] = _ratings(model, out).float()
    nan = float("nan")
    result = dict.fromkeys(OWN, nan)
    if n:
        result = {"mse": mse(preds, y), "rmse": rmse(preds, y), "mae": mae(preds, y)}
    if out.ndim == 1 or out.shape[1:] == (1,):  # ratings: the untrained rows join, at the mean
        seen_out, seen_y = preds.reshape(n, *out.shape[1:]), y
    else:  # logits or the like have no value for the mean: the trained pairs only
        seen_out, seen_y = out, y[warm]
    names = [metric_name(m) for m in metrics]
    extra = [(k, m) for k, m in zip(names, metrics, strict=True) if k not in OWN]
    if loss_func is not None:
        result["loss"] = float(loss_func(seen_out, seen_y)) if len(seen_y) else nan
    for k, m in extra:
        result[k] = float(m(seen_out, seen_y)) if len(seen_y) else nan
    return result | {"n": n, "fallback": int(cold.sum())}


def _outputs(model: nn.Module, x: Tensor, bs: int) -> Tensor:
    """What `model` returns for pairs `x`, in chunks of `bs`, in eval mode (its mode restored)."""
    was_training = model.training
    model.eval()
    try:
        # at least one pass, on no rows if need be, so the output's shape is known
        outs = [model(x[i : i + bs]).float() for i in range(0, max(len(x), 1), bs)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def _ratings(model: nn.Module, out: Tensor) -> Tensor:
    return model.output_to_rating(out) if isinstance(model, CollabModel) else out.reshape(-1)
