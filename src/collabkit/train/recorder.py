"""What training did, shown: the recorder and its plots, the results table, the summary.

Tables show once: in a notebook they are displayed, elsewhere printed, and None is returned
(`show=False` returns them instead), so a notebook cell does not show the same table twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.display import in_notebook
from collabkit.errors import CollabkitError
from collabkit.evaluate import metric_name
from collabkit.train import args

if TYPE_CHECKING:
    from collabkit.train.learner import Learner


SMOOTH_BETA = 0.98  # fastai's AvgSmoothLoss


def smooth_loss(losses: list[float], beta: float = SMOOTH_BETA) -> list[float]:
    """Each batch's loss as an exponential moving average of the losses so far, debiased.

    fastai's `AvgSmoothLoss`: avg_k = beta * avg_(k-1) + (1 - beta) * loss_k from avg_0 = 0, shown
    as avg_k / (1 - beta**k) so the first values are not pulled towards 0. One average runs over
    every batch this learner trained (fastai's restarts at each fit, as its recorder forgets the
    earlier fits; collabkit's recorder keeps them).
    """
    if not 0 <= beta < 1:
        raise CollabkitError(f"beta must be at least 0 and below 1, got {beta}")
    out, avg, weight = [], 0.0, 1.0
    for loss in losses:
        avg = beta * avg + (1 - beta) * float(loss)
        weight *= beta
        out.append(avg / (1 - weight))
    return out


class Summary(str):
    """Text that shows as itself in a notebook (no quotes) and prints as itself."""

    def __repr__(self) -> str:
        return str(self)


class Recorder:
    """What happened in training: per-epoch values, per-batch losses and learning rates, and plots.

    `values` rows are [train_loss, valid_loss, *metrics] (fastai's layout); `losses` are each batch's
    mean loss and `lrs` each batch's learning rate, for every fit of this learner.
    """

    def __init__(self, learn: Learner) -> None:
        self.learn = learn
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.iters: list[int] = []  # len(losses) at the end of each epoch

    @property
    def metric_names(self) -> list[str]:
        return ["epoch", "train_loss", "valid_loss", *map(metric_name, self.learn.metrics), "time"]

    @property
    def values(self) -> list[list[float]]:
        names = self.metric_names[1:-1]
        return [[row.get(n, float("nan")) for n in names] for row in self.learn.history]

    def add_batches(self, losses: list[Tensor], sizes: list[int], first_step: int) -> None:
        """One epoch's batch losses (summed over each batch, as tensors: no sync per step)."""
        if not losses:
            return
        per_batch = (torch.stack(losses).double().cpu() / torch.tensor(sizes, dtype=torch.float64)).tolist()
        total = max(1, self.learn.n_epoch * self.learn.n_iter)
        self.losses += per_batch
        self.lrs += [self.learn.hyper((first_step + i) / total)[0] for i in range(len(per_batch))]
        self.iters.append(len(self.losses))

    def smooth_losses(self, beta: float = SMOOTH_BETA) -> list[float]:
        """`losses` as fastai's recorder keeps them: a debiased moving average (`smooth_loss`)."""
        return smooth_loss(self.losses, beta)

    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, smooth: bool = True) -> Any:
        """Training loss per batch, and validation loss per epoch; returns the matplotlib figure.

        The training loss is smoothed as fastai plots it (`smooth_loss`, beta 0.98), so the trend
        shows through the noise of single batches; `smooth=False` plots each batch's own loss.
        """
        import matplotlib

        matplotlib.use("Agg") if not in_notebook() else None
        import matplotlib.pyplot as plt

        train = self.smooth_losses() if smooth else self.losses
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(skip_start, len(train)), train[skip_start:], label="train")
        if with_valid and self.iters:
            valid = [row.get("valid_loss", float("nan")) for row in self.learn.history[-len(self.iters) :]]
            ax.plot(self.iters, valid, marker="o", label="valid")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss (smoothed)" if smooth else "loss")
        ax.legend()
        return fig

    def plot_sched(self) -> Any:
        """The learning rate of every batch; returns the matplotlib figure."""
        import matplotlib

        matplotlib.use("Agg") if not in_notebook() else None
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs)
        ax.set_xlabel("batch")
        ax.set_ylabel("learning rate")
        return fig


def results_table(learn: Learner, n: int = 9, ds_idx: int = 1) -> pd.DataFrame:
    """`n` rows of a set with the true and the predicted rating (titles where known)."""
    n = args.whole("n", n, 1)
    dl = learn.dls[ds_index(ds_idx)]
    x, y = dl.x[:n].cpu(), dl.y[:n].cpu()
    users = learn.dls.user_vocab.decode(x[:, 0].tolist())
    items = learn.dls.item_vocab.decode(x[:, 1].tolist())
    preds = learn.predict(pd.DataFrame({learn.dls.user_name: users, learn.dls.item_name: items}))
    frame = pd.DataFrame(
        {
            learn.dls.user_name: users,
            learn.dls.item_name: learn.dls.titles_of(x[:, 1].tolist()),
            learn.dls.rating_name: y.tolist(),
            f"{learn.dls.rating_name}_pred": np.round(preds, 4),
        }
    )
    return frame


def summary_text(learn: Learner) -> Summary:
    """The model's layers and parameter counts, the loss, the optimiser and the callbacks."""
    lines = [f"{type(learn.model).__name__} (input: a (batch, 2) tensor of user and item indices)", ""]
    lines.append(f"{'layer':<34}{'shape':<22}{'parameters':>12}  trainable")
    total = trainable = 0
    for name, p in learn.model.named_parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        lines.append(f"{name:<34}{str(tuple(p.shape)):<22}{p.numel():>12,}  {p.requires_grad}")
    lines += [
        "",
        f"Total parameters: {total:,} ({trainable:,} trainable)",
        f"Loss: {type(learn.loss_func).__name__}",
        f"Optimiser: AdamW (beta2 0.99, eps 1e-5){', fused dot step' if learn.uses_fused_step() else ''}",
        (
            f"Last fit: {learn.last_fit.describe()}"
            if learn.last_fit is not None
            else f"Not fitted yet: weight decay {learn.wd:g} and lr {learn.lr:g} unless a fit says otherwise"
        ),
        f"Callbacks: {', '.join(map(repr, learn.cbs)) or 'none'} (and the recorder)",
        f"Epochs trained: {learn.epoch}",
    ]
    return Summary("\n".join(lines))


def ds_index(ds_idx: object) -> int:
    """`ds_idx` checked: 0 (the training set) or 1 (the validation set), as fastai numbers them."""
    if isinstance(ds_idx, bool) or not isinstance(ds_idx, (int, np.integer)) or ds_idx not in (0, 1):
        raise CollabkitError(
            f"ds_idx must be 0 (training set) or 1 (validation set), got {args.shown(ds_idx)}"
        )
    return int(ds_idx)
