"""fastai's one-cycle schedule as plain functions of the training progress (0 at start, 1 at end)."""

from __future__ import annotations

import math


def cos_anneal(start: float, end: float, pos: float) -> float:
    """Cosine from `start` (pos=0) to `end` (pos=1), as fastai's SchedCos."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def _two_phase(pos: float, pct_start: float, start: float, middle: float, end: float) -> float:
    if pos < pct_start:
        return cos_anneal(start, middle, pos / pct_start)
    return cos_anneal(middle, end, (pos - pct_start) / (1 - pct_start))


def one_cycle_lr(
    pos: float, lr_max: float, div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25
) -> float:
    """Learning rate at progress `pos`: lr_max/div up to lr_max over pct_start, then to lr_max/div_final."""
    return _two_phase(pos, pct_start, lr_max / div, lr_max, lr_max / div_final)


def one_cycle_mom(
    pos: float, moms: tuple[float, float, float] = (0.95, 0.85, 0.95), pct_start: float = 0.25
) -> float:
    """Momentum (Adam's beta1) at progress `pos`: 0.95 down to 0.85 while the rate warms up, back after."""
    return _two_phase(pos, pct_start, *moms)
