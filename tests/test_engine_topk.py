"""`row_topk`, the engine's chunked top-k: the same scores as `torch.topk`, on any row width."""

from __future__ import annotations

import pytest
import torch

from collabkit.recommend.engine import CHUNK, row_topk


@pytest.mark.parametrize("width", [50, 10 * CHUNK * 8, 10 * CHUNK * 8 + 37, 20_011])
def test_row_topk_gives_topks_scores_and_columns(width: int) -> None:
    g = torch.Generator().manual_seed(width)
    scores = torch.randn(40, width, generator=g)
    scores[0] = float("-inf")  # a user who has seen everything: nothing finite
    scores[1, 5:] = float("-inf")  # fewer finite scores than the list is long
    scores[2, -3:] = 50.0  # the best scores in the last, shorter chunk
    scores[3] = torch.randint(0, 3, (width,), generator=g).float()  # ties everywhere
    top, at = row_topk(scores, 10)
    want, _ = scores.topk(10, dim=1)
    assert torch.equal(top, want)
    assert int(at.min()) >= 0 and int(at.max()) < width
    assert torch.equal(scores.gather(1, at), top)  # each column holds the score reported for it
    finite = torch.isfinite(top)
    for r in range(len(scores)):  # no column twice among a row's real answers
        cols = at[r][finite[r]]
        assert len(cols.unique()) == len(cols)
