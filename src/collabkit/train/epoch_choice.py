"""The keep_best recipes' choice of an epoch count, on rows held aside from the training rows.

Shared by `collabkit.workflows.train` (a model trained alone) and `collabkit.train.members` (a
blend's members), so that a member is trained exactly as it would be alone.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from collabkit.models.settings import Recipe
from collabkit.train.learner import Learner

INNER_VALID = 0.1  # the share of training rows a keep_best recipe watches


def start_from_biases(net: Any, x: Tensor, y: Tensor, zero_factors: bool = False) -> bool:
    """Set a dot model's biases to the biases-only model of the pairs `x`, ratings `y` (and its
    factors to 0 with `zero_factors`: the start kept as the answer); False: it has no biases."""
    start = getattr(net, "start_from_biases", None)
    return bool(start(x, y, zero_factors)) if callable(start) else False


def choose_epochs(learn: Learner, recipe: Recipe) -> tuple[list[float | None], int]:
    """Score the biases-only start and each epoch of `recipe` on `learn`'s validation rows (the
    held-aside training rows). Returns the losses (index 0: the start, None for a model without
    biases; index e: after epoch e) and the best count (the fewest on a tie; 0: the start)."""
    net, train = learn.model, learn.dls.train
    losses: list[float | None] = [None]
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if start_from_biases(net, train.x, train.y):
        losses[0] = float(learn.validate()["valid_loss"])
        net.load_state_dict(initial)  # the epochs start where the recipe starts, not from the biases
    learn.fit_one_cycle(recipe.epochs, recipe.lr, wd=recipe.wd)
    losses += [float(row.get("valid_loss", math.nan)) for row in learn.history]
    scored = [(loss, epoch) for epoch, loss in enumerate(losses) if loss is not None and math.isfinite(loss)]
    return losses, (min(scored)[1] if scored else recipe.epochs)
