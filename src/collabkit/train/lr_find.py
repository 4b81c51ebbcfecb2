"""The learning-rate finder: an exponential sweep on a copy of the model's state, as fastai's.

The learning rate grows from `start_lr` to `end_lr` over `num_it` batches; the loss is smoothed
(exponentially, debiased) and the sweep stops early once it passes four times its minimum. The
model's weights are put back afterwards. Suggestions, as fastai computes them:
  valley   the middle of the longest stretch over which the loss keeps falling (fastai's default)
  slide    the point where the loss's slope stops changing, walking back from the end
  minimum  a tenth of the rate at the lowest loss
  steep    the rate where the loss falls fastest
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from collabkit.atomic import write_with
from collabkit.errors import CollabkitError
from collabkit.models import CollabModel
from collabkit.train import args
from collabkit.train.optim import make_adam, set_hyper

MAX_NUM_IT = 100_000  # batches in one sweep; more is a typo, and would run for hours

if TYPE_CHECKING:
    from collabkit.train.learner import Learner


class SuggestedLRs(NamedTuple):
    """fastai's suggestion object: `.valley` (the default pick), `.slide`, `.minimum`, `.steep`."""

    valley: float
    slide: float
    minimum: float
    steep: float


class LRFinderResult(NamedTuple):
    suggestions: SuggestedLRs
    lrs: list[float]
    losses: list[float]


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The middle of the longest decreasing run of the loss curve (fastai's `valley`)."""
    n = len(losses)
    run = [1] * n  # longest decreasing subsequence ending at i
    best_end, best_start = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[best_end] < run[i]:
            best_end, best_start = i, i - run[i]
    third = (best_end - best_start) / 3
    return float(lrs[min(n - 1, best_start + int(third) + int(third / 2))])


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """Walk back from the end until the slope of the loss stops changing (fastai's `slide`)."""
    grad = np.gradient(losses)
    r, left = -1, -1 - lr_diff
    found = lrs[left] if len(lrs) > lr_diff else lrs[0]
    while left >= -len(losses) and abs(grad[r] - grad[left]) > thresh:
        found = lrs[left]
        r, left = r - 1, left - 1
    return float(found)


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the learning rate at the lowest loss."""
    return float(lrs[int(np.argmin(losses))] / 10)


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The learning rate where the loss falls fastest against log(lr)."""
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    show_plot: bool = True,
    plot_path: str | Path | None = None,
) -> LRFinderResult:
    """Sweep the learning rate on `learn` (its weights restored afterwards); see the module docstring.

    Raises:
        CollabkitError: bad sweep settings, no training data, or a family that is not trained by
            gradient steps (its capabilities say `lr_find` False): it has no learning rate.
    """
    if isinstance(learn.model, CollabModel) and not type(learn.model).capabilities().lr_find:
        raise CollabkitError(
            f"model {learn.model.name!r} is fitted in closed form or by its own solver, "
            "so it has no learning rate to find"
        )
    start_lr = args.number("start_lr", start_lr, low=0.0, low_open=True)
    end_lr = args.number("end_lr", end_lr, low=0.0, low_open=True)
    if not start_lr < end_lr:
        raise CollabkitError(f"end_lr must be above start_lr, got start_lr={start_lr:g}, end_lr={end_lr:g}")
    num_it = args.whole("num_it", num_it, 10, MAX_NUM_IT)
    stop_div = args.flag("stop_div", stop_div)
    if learn.dls is None or learn.dls.train.n == 0:
        raise CollabkitError("lr_find needs training data: set learn.dls first")
    model, dl = learn.model, learn.dls.train
    state = copy.deepcopy(model.state_dict())
    gen_state, rng = dl.generator.get_state(), torch.get_rng_state()
    model.to(learn.device).train()
    dl.to(learn.device)
    opt = make_adam(model, lr=start_lr, wd=learn.wd)
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    try:
        for i, (xb, yb) in enumerate(_cycle(dl, num_it)):
            lr = start_lr * (end_lr / start_lr) ** (i / (num_it - 1))
            set_hyper(opt, lr, 0.9)
            loss = learn.loss_func(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            avg = 0.98 * avg + 0.02 * value
            smooth = avg / (1 - 0.98 ** (i + 1))
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if stop_div and (not math.isfinite(smooth) or smooth > 4 * best):
                break
    finally:
        model.load_state_dict(state)
        dl.generator.set_state(gen_state)
        torch.set_rng_state(rng)
    skip_start, skip_end = num_it // 10, 5
    lr_arr = np.array(lrs[skip_start:-skip_end] if len(lrs) > skip_start + skip_end + 2 else lrs)
    loss_arr = np.array(losses[skip_start:-skip_end] if len(lrs) > skip_start + skip_end + 2 else losses)
    finite = np.isfinite(loss_arr)
    lr_arr, loss_arr = lr_arr[finite], loss_arr[finite]
    if len(lr_arr) < 3:
        raise CollabkitError("the loss diverged at once; try a lower start_lr")
    sugg = SuggestedLRs(valley(lr_arr, loss_arr), slide(lr_arr, loss_arr), minimum(lr_arr, loss_arr),
                        steep(lr_arr, loss_arr))  # fmt: skip
    if show_plot or plot_path is not None:
        fig = plot_lr_find(lrs, losses, sugg)
        if plot_path is not None:
            write_with(Path(plot_path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return LRFinderResult(sugg, lrs, losses)


def plot_lr_find(lrs: list[float], losses: list[float], sugg: SuggestedLRs) -> Any:
    """Loss against learning rate on a log axis, with the suggestions marked; the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (smoothed)")
    lr_at = np.array(lrs)
    for (name, value), marker in zip(sugg._asdict().items(), "o^sv", strict=True):
        k = int(np.argmin(np.abs(np.log(lr_at) - math.log(value))))
        ax.plot(value, losses[k], marker, label=f"{name}: {value:.2e}")
    ax.legend()
    fig.tight_layout()
    return fig


def _cycle(dl: Any, n: int) -> Iterator[tuple[Tensor, Tensor]]:
    """`n` training batches, starting new epochs as needed."""
    done = 0
    while done < n:
        for batch in dl:
            yield batch
            done += 1
            if done == n:
                return
