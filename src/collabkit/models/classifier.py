"""A rating classifier: the deep network with one logit per rating level, trained by cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from collabkit.models.nn import EmbeddingNN


class RatingClassifier(EmbeddingNN):
    """Predicts a distribution over the rating levels (e.g. 1..5); its rating is the expectation.

    The chapter's notes trained this with the mean probability of the true class, which is not a
    proper loss; collabkit uses cross-entropy on the logits (`RatingCrossEntropy`).
    """

    levels: Tensor  # (L,) buffer: the rating of each class

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        levels: Sequence[float],
        layers: Sequence[int] = (100, 50),
        ps: Sequence[float] = (),
        embed_p: float = 0.0,
    ) -> None:
        super().__init__(emb_szs, layers=layers, ps=ps, embed_p=embed_p, y_range=None, out_sz=len(levels))
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.float32))

    def expected_rating(self, logits: Tensor) -> Tensor:
        """(B, L) logits -> (B,) expected rating under the softmax."""
        return logits.softmax(dim=1) @ self.levels

    def level_index(self, ratings: Tensor) -> Tensor:
        """Ratings -> index of the nearest level (targets for cross-entropy)."""
        return (ratings.view(-1, 1) - self.levels.view(1, -1)).abs().argmin(dim=1)


class RatingCrossEntropy(nn.Module):
    """Cross-entropy of a RatingClassifier's logits against ratings (mapped to level indices)."""

    levels: Tensor

    def __init__(self, levels: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.float32))

    def forward(self, logits: Tensor, ratings: Tensor) -> Tensor:
        target = (ratings.view(-1, 1) - self.levels.view(1, -1)).abs().argmin(dim=1)
        return nn.functional.cross_entropy(logits, target)
