"""fastai's one-cycle: rates and momenta at known points, and always within bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collabkit.train.schedule import one_cycle_lr, one_cycle_mom


def test_known_points() -> None:
    lr = 5e-3
    assert one_cycle_lr(0.0, lr) == pytest.approx(lr / 25)
    assert one_cycle_lr(0.25, lr) == pytest.approx(lr)
    assert one_cycle_lr(1.0, lr) == pytest.approx(lr / 1e5)
    # halfway through the warm-up the cosine is halfway between start and peak
    assert one_cycle_lr(0.125, lr) == pytest.approx((lr / 25 + lr) / 2)
    # halfway through the annealing: halfway between the peak and the floor
    assert one_cycle_lr(0.625, lr) == pytest.approx((lr + lr / 1e5) / 2)
    assert one_cycle_mom(0.0) == pytest.approx(0.95)
    assert one_cycle_mom(0.25) == pytest.approx(0.85)
    assert one_cycle_mom(0.625) == pytest.approx(0.90)
    assert one_cycle_mom(1.0) == pytest.approx(0.95)


@given(st.floats(0, 1), st.floats(1e-6, 1.0))
def test_within_bounds(pos: float, lr_max: float) -> None:
    lr = one_cycle_lr(pos, lr_max)
    assert lr_max / 1e5 * (1 - 1e-9) <= lr <= lr_max * (1 + 1e-9)
    assert 0.85 - 1e-9 <= one_cycle_mom(pos) <= 0.95 + 1e-9


def test_rate_rises_then_falls() -> None:
    pts = [one_cycle_lr(i / 100, 1.0) for i in range(101)]
    peak = pts.index(max(pts))
    assert peak == 25
    assert all(a <= b for a, b in zip(pts[:peak], pts[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(pts[peak:], pts[peak + 1 :], strict=False))
