"""A trained model behind raw ids: predictions, top-N recommendations, similar items, new users."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from collabkit.errors import CollabkitError, UnknownIdError
from collabkit.models import predict_ratings
from collabkit.persist import SavedModel, load_model

UnknownPolicy = Literal["error", "mean"]


class Recommender:
    """Raw user and item ids in, answers out. Build it with `Recommender.load(folder)`.

    Items can be named by raw id or, where the model knows titles, by title.
    """

    def __init__(self, saved: SavedModel) -> None:
        self.saved = saved
        self.model = saved.model.eval()
        self.users, self.items = saved.users, saved.items
        self.global_mean = float(saved.train_y.mean()) if len(saved.train_y) else 0.0
        self._title_to_item = {str(t): i for i, t in saved.item_titles.items()}

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Recommender:
        """Load a model folder written by `collabkit train` or `Learner.export`."""
        return cls(load_model(path, device=device))

    # -- ids -------------------------------------------------------------------------------
    def parse_user(self, text: Any) -> Any:
        """The raw user id a command-line string stands for (ids may be numbers)."""
        return _match(text, self.users, {}, "user")

    def parse_item(self, text: Any) -> Any:
        """The raw item id a string stands for: an id, or a title the model knows."""
        return _match(text, self.items, self._title_to_item, "item")

    def title(self, item: Any) -> str:
        """The item's title where the model knows one, else its id as text."""
        return str(self.saved.item_titles.get(item, item))

    # -- predictions -----------------------------------------------------------------------
    @torch.inference_mode()
    def predict(
        self, users: Sequence[Any], items: Sequence[Any], unknown: UnknownPolicy = "error"
    ) -> np.ndarray:
        """Predicted ratings for the pairs (users[k], items[k]).

        `unknown="error"` raises for an id the model never saw; `"mean"` answers the training mean
        rating for such a pair (Surprise's fallback), since the model has nothing to say about it.
        """
        users, items = list(users), list(items)
        if len(users) != len(items):
            raise CollabkitError(f"users and items must pair up: {len(users)} users, {len(items)} items")
        policy = "error" if unknown == "error" else "na"
        u = self.users.encode(users, policy)
        i = self.items.encode(items, policy)
        x = torch.from_numpy(np.stack([u, i], axis=1)).to(_device(self.model))
        preds = predict_ratings(self.model, x).float().cpu().numpy() if len(x) else np.zeros(0, np.float32)
        if unknown == "mean":
            preds[(u == 0) | (i == 0)] = self.global_mean
        return preds


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _match(text: Any, vocab: Any, titles: dict[str, Any], kind: str) -> Any:
    if text in vocab:
        return text
    if isinstance(text, str):
        stripped = text.strip()
        if stripped in vocab:
            return stripped
        try:
            number = int(stripped)
        except ValueError:
            number = None
        if number is not None and number in vocab:
            return number
        if stripped in titles:
            return titles[stripped]
    hint = " or title" if titles else ""
    raise UnknownIdError(f"{kind} {text!r} is not an id{hint} the model knows ({len(vocab) - 1} {kind}s)")
