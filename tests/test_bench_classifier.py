"""bench/classifier.py's metrics on toy predictions whose answers are known, and one tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_ratings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import classifier as bc  # noqa: E402

LEVELS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def test_ece_of_a_calibrated_prediction_is_about_zero() -> None:
    # in each bin, the top level is right exactly as often as the confidence says
    rng = np.random.default_rng(0)
    confidence = rng.choice([0.25, 0.55, 0.85], size=60_000)
    correct = rng.random(60_000) < confidence
    assert bc.expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=0.01)


def test_ece_of_an_overconfident_prediction() -> None:
    # says 0.9 and is right half the time: ECE 0.4; says 0.3 and is always right: 0.7
    assert bc.expected_calibration_error(np.full(4, 0.9), np.array([1, 0, 1, 0])) == pytest.approx(0.4)
    conf = np.array([0.9, 0.9, 0.3, 0.3])
    correct = np.array([1, 0, 1, 1])
    assert bc.expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.4 + 0.5 * 0.7)
    bins = bc.reliability(np.array([0.0, 1.0, 0.95]), np.array([1, 1, 0]), bins=10)
    assert [b["n"] for b in bins] == [1] + [0] * 8 + [2]  # a confidence of 1 is in the last bin


def test_classifier_metrics_on_a_toy_case() -> None:
    y = np.array([1.0, 3.0, 5.0, 4.0])
    probs = np.array(
        [
            [0.6, 0.1, 0.1, 0.1, 0.1],  # top 1, right
            [0.0, 0.0, 1.0, 0.0, 0.0],  # top 3, right
            [0.0, 0.0, 0.0, 0.5, 0.5],  # a tie: argmax takes the first, 4: wrong
            [0.0, 0.0, 0.0, 0.0, 1.0],  # top 5: wrong
        ]
    )
    m = bc.classifier_metrics(probs, LEVELS, y)
    assert m["accuracy"] == pytest.approx(0.5)
    expected = probs @ LEVELS  # 2.0, 3.0, 4.5, 5.0
    assert m["RMSE"] == pytest.approx(np.sqrt(np.mean((expected - y) ** 2)))
    assert m["RMSE level"] == pytest.approx(np.sqrt((0 + 0 + 1 + 1) / 4))
    assert m["confidence"] == pytest.approx((0.6 + 1 + 0.5 + 1) / 4)


def test_regression_metrics_use_the_nearest_level() -> None:
    y = np.array([1.0, 2.0, 5.0, 4.0])
    pred = np.array([1.4, 2.6, 4.6, 3.2])  # nearest levels 1, 3, 5, 3
    m = bc.regression_metrics(pred, LEVELS, y)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["RMSE"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))
    assert m["RMSE level"] == pytest.approx(np.sqrt((0 + 1 + 0 + 1) / 4))


def test_a_tiny_run_scores_every_model_on_the_same_rows(tmp_path: Path) -> None:
    table = make_ratings(n_users=30, n_items=20, n=400, seed=1)
    results = [bc.score(table, "chapter", m) for m in ("classifier", "dotbias")]
    assert results[0].n == results[1].n > 0
    assert "ECE" in results[0].metrics and "ECE" not in results[1].metrics
    for r in results:
        assert 0 <= r.metrics["accuracy"] <= 1 and np.isfinite(r.metrics["RMSE"])
    bc.plot(results, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
