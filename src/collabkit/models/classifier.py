"""A rating classifier: the deep network with one logit per rating level, trained by cross-entropy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.evaluate import ExpectedRatingRMSE, LevelAccuracy, expected_rating
from collabkit.models.base import Metric, ModelConfig, nearest_level, register
from collabkit.models.nn import NN_RECIPES, EmbeddingNN, NetSettings


class ClassifierSettings(NetSettings):
    """The deep network's settings, with the rating levels (one class each) instead of a range."""

    levels: list[float] | None = Field(None, description="the rating levels, ascending; from the data")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) < 2:
            raise ValueError(f"a classifier needs at least 2 rating levels, got {v}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"levels must be distinct and ascending, got {v}")
        return v


@register("classifier")
class RatingClassifier(EmbeddingNN):
    """Predicts a distribution over the rating levels (e.g. 1..5); its rating is the expectation.

    The chapter's notes trained this with the mean probability of the true class, which is not a
    proper loss; collabkit uses cross-entropy on the logits (`RatingCrossEntropy`).
    """

    levels: Tensor  # (L,) buffer: the rating of each class
    Settings = ClassifierSettings
    recipes = NN_RECIPES

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

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        base = super().settings_from_data(settings, dls)
        return {**base, "levels": base.get("levels") or dls.rating_levels()}

    @classmethod
    def from_config(cls, config: ModelConfig) -> RatingClassifier:
        s = cast(ClassifierSettings, config.settings)  # ModelConfig checked it
        if s.levels is None:
            raise CollabkitError("the classifier needs its rating levels (e.g. [1, 2, 3, 4, 5])")
        emb = s.embedding_sizes(config.n_users, config.n_items)
        return cls(emb, s.levels, s.layers, s.ps, s.embed_p)

    def expected_rating(self, logits: Tensor) -> Tensor:
        """(B, L) logits -> (B,) expected rating under the softmax."""
        return expected_rating(logits, self.levels)

    def level_index(self, ratings: Tensor) -> Tensor:
        """Ratings -> index of the nearest level (targets for cross-entropy)."""
        return nearest_level(ratings, self.levels.to(ratings.device))

    # -- the protocol --------------------------------------------------------------------------
    def default_loss(self) -> Callable[[Tensor, Tensor], Tensor]:
        return RatingCrossEntropy(self.levels.tolist())

    def default_metrics(self) -> list[Metric]:
        levels = self.levels.tolist()
        return [LevelAccuracy(levels), ExpectedRatingRMSE(levels)]

    def output_to_rating(self, out: Tensor) -> Tensor:
        return self.expected_rating(out)

    def output_to_preds(self, out: Tensor) -> Tensor:
        return out.float().softmax(dim=1)

    def _logits_to_raw(self, flat: Tensor) -> Tensor:
        return self.expected_rating(flat)

    def _fold_in_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, self.level_index(y))


class RatingCrossEntropy(nn.Module):
    """Cross-entropy of a RatingClassifier's logits against ratings (mapped to level indices)."""

    levels: Tensor

    def __init__(self, levels: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.float32))

    def forward(self, logits: Tensor, ratings: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, nearest_level(ratings, self.levels.to(ratings.device)))
