"""`Recommender`: a trained model behind raw ids. Predictions, top-N lists, similar items, new users.

Which items can be answers: an item needs at least `min_count` training ratings (default
`MIN_COUNT`, 10: with fewer, its vector and bias are mostly noise; pass `min_count=1` for every
trained item). The vocabulary also holds items seen only in held-out rows; the model learned
nothing about them, so they are never recommended, are refused as `similar_items` queries, and are
predicted only under `unknown="mean"`, which answers the training mean and says so. A new item
(not in the model at all) needs retraining. A new user is served by `fold_in` and
`recommend_for_ratings`; a user with no ratings by `popular`.

What every query needs (the seen-items matrix, the id resolver, counts, unit vectors) is computed
once by the `TrainedModel` and shared with `collabkit.interpret`; what a family cannot answer is
asked of `type(model).capabilities()` and refused in one line.

Every rating it returns is clipped to the training ratings' range (`TrainedModel.rating_range()`):
`predict`, `predict_details`, `predict_new`, and the scores of a rating model's `recommend`,
`recommend_many`, `popular` and `recommend_for_ratings`. A model's output range (a dot model's
`y_range` of 0 to 5.5 for 1-5 stars) is wider than the scale so that the sigmoid can reach its
ends; the value past them is an artefact of that, never a rating. Lists are ordered by the
model's unclipped scores, so clipping changes no order (two clipped ratings may tie).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from collabkit.bundle import MIN_COUNT, TrainedModel, lacks
from collabkit.data.tables import BadTimestamp, day_numbers
from collabkit.errors import CollabkitError, UnknownIdError
from collabkit.models import CollabModel, predict_ratings
from collabkit.models.custom import CustomModule
from collabkit.persist import load_model, load_module
from collabkit.recommend.engine import DEFAULT_SCORE_BUDGET, TopN, check_n, unit_neighbours
from collabkit.recommend.results import BatchRecommendations, NewUser, Recommendations, SimilarUsers
from collabkit.train import args

UnknownIdPrediction = Literal["error", "mean"]  # an untrained id: refuse it, or answer the training mean
UnknownUserPolicy = Literal["error", "popular"]
MAX_RATINGS = 1_000  # the most ratings a new user may bring to one fold-in
RECOMMEND_OPTIONS = ("exclude_seen", "min_count", "items", "exclude", "unknown", "popularity_penalty")
FOLD_IN_LIMIT = 1e6  # a folded-in row this large came from a near-singular solve, not from the ratings


class Recommender:
    """Raw user and item ids (or titles) in, answers out. Build it with `Recommender.load(folder)`.

    It uses what its `TrainedModel` computed once (the seen-items matrix, the resolver, counts, unit
    vectors), so making one is cheap; after training the model further, make a new TrainedModel.
    `score_budget` is the number of float32 scores computed at once; lower it to save memory.
    """

    def __init__(self, trained: TrainedModel, score_budget: int = DEFAULT_SCORE_BUDGET) -> None:
        if not isinstance(trained, TrainedModel):
            raise CollabkitError(
                f"trained must be a TrainedModel (use Recommender.load(folder)), got {args.shown(trained)}"
            )
        self.trained = trained
        self.model = trained.model.eval()
        self.capabilities = type(self.model).capabilities()
        self.users, self.items = trained.users, trained.items
        self.item_counts, self.user_counts = trained.item_counts, trained.user_counts
        self.global_mean = trained.global_mean
        self.resolve = trained.resolver
        self.engine = TopN(self.model, trained.seen, len(self.items), score_budget)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, model: nn.Module | None = None) -> Recommender:
        """Load a model folder written by `collabkit train` or `Learner.export`.

        For a folder exported from a Learner of your own module, pass an instance built as when it
        was exported (`model=MyModel(...)`): its weights are loaded into it (no pickle) and it is
        wrapped by `collabkit.models.custom.CustomModule`, which recommends and predicts.
        """
        args.path("path", path)
        if not isinstance(device, str):
            raise CollabkitError(f"device must be a string such as 'cpu' or 'cuda', got {args.shown(device)}")
        if model is not None and not isinstance(model, nn.Module):
            raise CollabkitError(
                f"model must be a torch nn.Module built as when exported, got {args.shown(model)}"
            )
        if model is None:
            return cls(load_model(path, device=device))
        users, items, x, y, history = load_module(path, model)
        net = model if isinstance(model, CollabModel) else CustomModule(model, len(users), len(items))
        return cls(TrainedModel(net.to(device).eval(), None, users, items, x, y, history=history))

    def __repr__(self) -> str:
        return (
            f"Recommender({self.trained.name} model: {int((self.item_counts > 0).sum()):,} trained items of "
            f"{len(self.items) - 1:,}, {int((self.user_counts > 0).sum()):,} trained users; scores are "
            f"{self.model.score_kind}s)"
        )

    # -- ids -------------------------------------------------------------------------------------
    def parse_user(self, text: Any) -> Any:
        """The raw user id a string stands for (ids may be numbers)."""
        return self.resolve.user(text)

    def parse_item(self, text: Any) -> Any:
        """The raw item id a string stands for: an id, or a title naming exactly one item."""
        return self.resolve.item(text)

    def title(self, item: Any) -> str:
        """The item's title where the model knows one, else its id as text."""
        return self.resolve.title(item)

    # -- predictions -----------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_details(
        self, users: Sequence[Any], items: Sequence[Any], unknown: UnknownIdPrediction = "error",
        when: Sequence[Any] | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """One row per (users[k], items[k]) pair: user, item, rating (clipped to the training
        ratings' range), fallback.

        A user or item with no training ratings has nothing learned to say: `unknown="error"`
        raises UnknownIdError; `"mean"` answers the training mean rating with `fallback` True
        (Surprise's `was_impossible`). `when`: each rating's time (Unix seconds or a date), for a
        model with day effects (bayesmf); without it, a rating at no particular day.
        """
        self._require_ratings("predict")
        users, items = args.ids("users", users, "user id"), args.ids("items", items, "item id")
        if len(users) != len(items):
            raise CollabkitError(f"users and items must pair up: {len(users)} users, {len(items)} items")
        args.one_of("unknown", unknown, ("error", "mean"))
        u = self.users.encode(users, "na")
        i = self.items.encode(items, "na")
        cold = (self.user_counts.numpy()[u] == 0) | (self.item_counts.numpy()[i] == 0) | (u == 0) | (i == 0)
        if cold.any() and unknown == "error":
            k = int(np.flatnonzero(cold)[0])
            who = f"user {users[k]!r}" if u[k] == 0 or self.user_counts[u[k]] == 0 else f"item {items[k]!r}"
            raise UnknownIdError(
                f"{who} has no training ratings, so the model has learned nothing about it "
                "(it may only be in the held-out rows); pass unknown='mean' for the training mean"
            )
        preds = np.full(len(users), self.global_mean, dtype=np.float32)
        warm = np.flatnonzero(~cold)
        x = torch.from_numpy(np.stack([u[warm], i[warm]], axis=1))
        if when is not None:
            x = torch.cat([x, torch.from_numpy(self._days(when, len(users))[warm])[:, None]], dim=1)
        for s in range(0, len(x), 65536):
            preds[warm[s : s + 65536]] = (
                predict_ratings(self.model, x[s : s + 65536].to(self.engine.device)).float().cpu().numpy()
            )
        return pd.DataFrame({"user": users, "item": items, "rating": self._clip(preds), "fallback": cold})

    def predict(
        self, users: Sequence[Any], items: Sequence[Any], unknown: UnknownIdPrediction = "error",
        when: Sequence[Any] | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Predicted ratings for the pairs (users[k], items[k]); see `predict_details` for `unknown`
        and `when`."""
        return self.predict_details(users, items, unknown, when)["rating"].to_numpy()

    def _days(self, when: Sequence[Any], n: int) -> np.ndarray:
        """Each pair's day (days since 1970) from `when`: one time, or one per pair."""
        if not getattr(self.model, "takes_days", False):
            raise CollabkitError(
                f"model {self.trained.name!r} has no day effects: a time changes none of its predictions "
                "(bayesmf trained on a table with timestamps has them)"
            )
        values = [when] if isinstance(when, (str, int, float)) else list(when)
        if len(values) not in (1, n):
            raise CollabkitError(f"give one time, or one per pair: {len(values)} times for {n} pairs")
        try:
            days = day_numbers(pd.Series(values))
        except BadTimestamp as e:
            raise CollabkitError(
                f"time {e.message}: give Unix seconds or a date such as 1998-03-14"
            ) from None
        return np.resize(days, n)

    # -- top-N -----------------------------------------------------------------------------------
    def recommend(self, user: Any, n: int = 10, **options: Any) -> Recommendations:
        """The n best unseen items for `user`, best first; options as `recommend_many`."""
        unknown = sorted(set(options) - set(RECOMMEND_OPTIONS))
        if unknown:
            raise CollabkitError(
                f"recommend: unknown option {unknown[0]!r}; it takes: {', '.join(RECOMMEND_OPTIONS)}"
            )
        return self.recommend_many([args.one_id("user", user)], n, **options)[0]

    @torch.inference_mode()
    def recommend_many(
        self,
        users: Sequence[Any],
        n: int = 10,
        *,
        exclude_seen: bool = True,
        min_count: int = MIN_COUNT,
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        unknown: UnknownUserPolicy = "error",
        popularity_penalty: float = 0.0,
    ) -> BatchRecommendations:
        """Top-n for many users at once (batch-first): row k is what `recommend(users[k])` answers.

        Args:
            exclude_seen: leave out the items each user rated in training.
            min_count: only items with at least this many training ratings.
            items: an allow-list of raw item ids to rank among; `exclude`: items never to return.
            unknown: a user with no training ratings raises ("error") or gets `popular` ("popular").
            popularity_penalty: trade accuracy for catalogue coverage: each item's score is lowered
                by this many of the user's score standard deviations times the item's standardised
                log training count (0: the model's own order). With a penalty, `scores` are those
                lowered scores (what ordered the list) and `model_scores` the model's own.
        """
        users, n = args.ids("users", users, "user id"), check_n(n)
        exclude_seen = args.flag("exclude_seen", exclude_seen)
        cand = self.candidates(min_count, items, exclude)
        u_idx = self._trained_users(users, unknown)
        known = u_idx > 0
        penalty = self._popularity(popularity_penalty)
        idx, sc, order = self._rank_users(torch.from_numpy(u_idx[known]), n, cand, exclude_seen, penalty)
        out_idx = np.full((len(users), idx.shape[1]), -1, dtype=np.int64)
        out_sc = np.full((len(users), idx.shape[1]), np.nan, dtype=np.float32)
        out_idx[known], out_sc[known] = idx, sc
        out_order = None if order is None else out_sc.copy()
        if out_order is not None and order is not None:
            out_order[known] = order
        if not known.all():  # the popular list, unpenalised: its own scores ordered it
            p_idx, p_sc, _ = self.engine.rank(self._mean_row()[None], idx.shape[1] or n, cand)
            out_idx[~known], out_sc[~known] = p_idx[0, : out_idx.shape[1]], p_sc[0, : out_idx.shape[1]]
            if out_order is not None:
                out_order[~known] = self._clip(p_sc[0, : out_idx.shape[1]])
        return self._batch(users, out_idx, out_sc, out_order)

    @torch.inference_mode()
    def popular(
        self, n: int = 10, *, min_count: int = MIN_COUNT, exclude: Sequence[Any] | None = None
    ) -> Recommendations:
        """The list for a user with no ratings: what the average trained user is predicted to like."""
        idx, sc, _ = self.engine.rank(
            self._mean_row()[None], check_n(n), self.candidates(min_count, None, exclude)
        )
        return self._batch([None], idx, sc)[0]

    # -- new users -------------------------------------------------------------------------------
    def fold_in(
        self,
        ratings: Mapping[Any, float],
        *,
        strength: float | None = None,
        about: Mapping[str, Any] | None = None,
    ) -> NewUser:
        """A new user's row fitted to `ratings` (item id or title -> rating), the items fixed.

        `strength` pulls the answer towards the average user (default: the model's
        `default_fold_in_strength`, chosen by bench/coldstart.py on simulated new users' NDCG@10).
        Ratings outside the model's training range are refused; rated items the model never
        trained on are left out and listed in `ignored`. `about` states the user's side columns
        (`{"age": 25, "gender": "F"}`) to a model that reads them (hybrid): the average user then
        starts from those, so even a user with no ratings gets a list for their kind.
        """
        self._require("fold_in")
        if about is not None and (
            not isinstance(about, Mapping) or not all(isinstance(k, str) for k in about)
        ):
            raise CollabkitError(f"about must be a dict of side column to value, got {args.shown(about)}")
        if not isinstance(ratings, Mapping):
            raise CollabkitError(
                f"ratings must be a dict of item id (or title) to rating, got {args.shown(ratings)}"
            )
        if len(ratings) > MAX_RATINGS:
            raise CollabkitError(f"at most {MAX_RATINGS:,} ratings per new user, got {len(ratings):,}")
        if strength is None:
            strength = self.model.default_fold_in_strength
        else:
            strength = args.number("strength", strength, low=0.0)
        scale = self.trained.rating_range()
        rated = {
            self.parse_item(args.one_id("each item of ratings", k)): check_rating(k, v, scale)
            for k, v in ratings.items()
        }
        idx = self.items.encode(list(rated), "error")
        used = self.item_counts.numpy()[idx] > 0
        ignored = [item for item, ok in zip(rated, used, strict=True) if not ok]
        y = torch.tensor([r for r, ok in zip(rated.values(), used, strict=True) if ok], dtype=torch.float32)
        prior = self._mean_row()
        if about:
            prior = self.model.prior_with_side(prior, dict(about))
        if len(y) == 0:
            row = prior
        else:
            row = self._solve_fold_in(torch.from_numpy(idx[used]), y, prior, strength)
        return NewUser(row.detach().clone(), rated, idx, ignored, strength, dict(about or {}))

    @torch.inference_mode()
    def recommend_for_ratings(
        self,
        ratings: Mapping[Any, float] | NewUser,
        n: int = 10,
        *,
        min_count: int = MIN_COUNT,
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        strength: float | None = None,
        about: Mapping[str, Any] | None = None,
    ) -> Recommendations:
        """Recommendations for a new user given only their ratings (cold start), rated items left
        out; `about` as `fold_in` takes it."""
        n = check_n(n)
        if isinstance(ratings, NewUser):
            self._check_new(ratings)
        new = (
            ratings if isinstance(ratings, NewUser) else self.fold_in(ratings, strength=strength, about=about)
        )
        cand = self.candidates(min_count, items, exclude)
        cand[torch.from_numpy(new.rated_idx)] = False
        idx, sc, _ = self.engine.rank(new.row[None], n, cand)
        return self._batch([None], idx, sc)[0]

    @torch.inference_mode()
    def predict_new(self, new: NewUser, items: Sequence[Any]) -> np.ndarray:
        """Predicted ratings of a folded-in user for raw item ids (or titles), clipped to the
        training ratings' range."""
        self._require_ratings("predict")
        self._check_new(new)
        idx = self.items.encode([self.parse_item(i) for i in args.ids("items", items, "item id")], "error")
        side = self.model.item_side(torch.from_numpy(idx).to(self.engine.device))
        raw = self.model.score_block(new.row[None], side)
        return self._clip(self.model.raw_to_rating(raw)[0].float().cpu().numpy())

    # -- similarity ------------------------------------------------------------------------------
    @torch.inference_mode()
    def similar_items(self, items: Any, n: int = 10, *, min_count: int = MIN_COUNT) -> Recommendations:
        """The n items whose vectors point most nearly the same way (cosine similarity).

        `items` is one raw id or title, or a list of them (combined as the mean of the normalised
        vectors); the query items, and items with the same title as a query (one film under two
        ids), are never returned. Query items must have training ratings.
        """
        if isinstance(items, (list, tuple, set, np.ndarray, pd.Series)):
            query = args.ids("items", list(items), "item id")
        else:
            query = [args.one_id("items", items)]
        idx, sims = nearest_items(self.trained, [self.parse_item(i) for i in query], n, min_count)
        return Recommendations(
            [self.items[int(i)] for i in idx], [self.title(self.items[int(i)]) for i in idx],
            sims.astype(np.float32), score_kind="cosine",
        )  # fmt: skip

    @torch.inference_mode()
    def similar_users(self, user: Any, n: int = 10, *, min_count: int = MIN_COUNT) -> SimilarUsers:
        """The n users whose vectors point most nearly the same way as `user`'s (cosine similarity)."""
        self._require("user_vectors")
        u_idx = self._trained_users([args.one_id("user", user)], "error")
        idx, sims = nearest_users(self.trained, int(u_idx[0]), n, min_count)
        return SimilarUsers([self.users[int(i)] for i in idx], sims.astype(np.float32))

    def _popularity(self, weight: float) -> Tensor | None:
        """(n_items,) weight x standardised log(1 + training count), or None for no penalty."""
        weight = args.number("popularity_penalty", weight, low=0.0)
        if weight == 0:
            return None
        logc = torch.log1p(self.item_counts.double())
        trained = self.item_counts > 0
        z = (logc - logc[trained].mean()) / logc[trained].std().clamp_min(1e-12)
        return (weight * z).float()

    def _rank_users(
        self, users: Tensor, n: int, cand: Tensor, exclude_seen: bool, penalty: Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`engine.rank` over users' rows built a slice at a time: a ranking model's row is as wide
        as the catalogue (or the user base), too big to build for every user at once."""
        step = max(256, self.engine.score_budget // max(1, len(self.items)))
        parts = []
        for chunk in users.split(step):
            rows = self.model.user_rows(chunk.to(self.engine.device))
            parts.append(self.engine.rank(rows, n, cand, chunk if exclude_seen else None, penalty))
        if not parts:
            return self.engine.rank(self._mean_row()[None][:0], n, cand, None, penalty)
        orders = [p[2] for p in parts]
        order = None if penalty is None else np.concatenate([o for o in orders if o is not None])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), order

    # -- shared pieces ---------------------------------------------------------------------------
    def candidates(
        self, min_count: int, items: Sequence[Any] | None, exclude: Sequence[Any] | None
    ) -> Tensor:
        """(n_items,) bool: the items that may be returned."""
        cand = item_candidates(self.trained, min_count)
        if items is not None:
            items = args.ids("items", items, "item id")
            allow = torch.zeros_like(cand)
            allow[torch.from_numpy(self.items.encode([self.parse_item(i) for i in items], "error"))] = True
            cand &= allow
        if exclude is not None:
            exclude = args.ids("exclude", exclude, "item id")
        if exclude:
            cand[torch.from_numpy(self.items.encode([self.parse_item(i) for i in exclude], "error"))] = False
        cand[0] = False  # `#na#` is never an answer
        return cand

    def _trained_users(self, users: list[Any], unknown: UnknownUserPolicy) -> np.ndarray:
        """Indices of users the model trained on; 0 for the others under unknown="popular"."""
        args.one_of("unknown", unknown, ("error", "popular"))
        idx = self.users.encode(users, "na")
        cold = (idx == 0) | (self.user_counts.numpy()[idx] == 0)
        if cold.any() and unknown == "error":
            bad = users[int(np.flatnonzero(cold)[0])]
            what = "is not in the model's vocabulary" if bad not in self.users else "has no training ratings"
            raise UnknownIdError(
                f"user {bad!r} {what}; use popular() for a user with no ratings, "
                "fold_in/recommend_for_ratings for a new user with some"
            )
        idx[cold] = 0
        return idx

    @cached_property
    def _mean_rows(self) -> Tensor:
        if not self.capabilities.fold_in:  # its rows are not vectors: there is no average of them
            raise CollabkitError(
                f"model {self.trained.name!r} has no average user to stand for someone without ratings "
                "(it cannot fold in a new user); recommend for a known user instead"
            )
        trained = torch.nonzero(self.user_counts > 0).squeeze(1)
        if len(trained) == 0:
            trained = torch.arange(1, len(self.users))
        wide = self.model.user_rows(trained[:1].to(self.engine.device)).shape[1] > WIDE_ROW
        if wide and len(trained) > MEAN_SAMPLE:  # a catalogue-wide row costs a product per user:
            pick = torch.randperm(len(trained), generator=torch.Generator().manual_seed(0))
            trained = trained[pick[:MEAN_SAMPLE]]  # the average of a fixed sample estimates it
        total: Tensor | None = None  # summed a block of users at a time: a row can be catalogue-wide
        for chunk in trained.split(max(256, self.engine.score_budget // max(1, len(self.items)))):
            part = self.model.user_rows(chunk.to(self.engine.device)).double().sum(0)
            total = part if total is None else total + part
        assert total is not None
        return (total / len(trained)).float()

    def _mean_row(self) -> Tensor:
        """(d,) the average trained user's row: the prior of fold-in and the row of `popular`.

        Exact for factor models; for a model whose rows are catalogue- or user-wide (a ranking
        family), the average over a fixed sample of MEAN_SAMPLE trained users where there are more.
        """
        return self._mean_rows

    def _solve_fold_in(self, item_idx: Tensor, y: Tensor, prior: Tensor, strength: float) -> Tensor:
        """The model's fold-in solve, its numeric failure (a singular system: collinear items and
        no pull towards the average user) one line naming `strength`, never a LinAlgError or NaNs."""
        fix = "give a larger strength (e.g. the default) or rate more, and more varied, items"
        try:
            with torch.inference_mode():
                row = self.model.fold_in(item_idx, y, prior, strength)
        except torch.linalg.LinAlgError:
            raise CollabkitError(
                f"{self.trained.name}: the fold-in failed numerically with strength={strength:g} "
                f"(the rated items' system is singular); {fix}"
            ) from None
        if not bool(torch.isfinite(row).all()) or float(row.abs().max()) > FOLD_IN_LIMIT:
            raise CollabkitError(
                f"{self.trained.name}: the fold-in failed numerically with strength={strength:g} "
                f"(the answer is {'not finite' if not bool(torch.isfinite(row).all()) else 'huge'}); {fix}"
            )
        return row

    def _check_new(self, new: Any) -> None:
        """`new` must be a NewUser folded in by a model of this shape (its row this model's width)."""
        if not isinstance(new, NewUser):
            raise CollabkitError(f"new must be a NewUser from fold_in(), got {args.shown(new)}")
        if new.row.shape != self._mean_row().shape:
            raise CollabkitError(
                f"new was folded in by another model: its row has shape {tuple(new.row.shape)}, "
                f"this model's rows {tuple(self._mean_row().shape)}"
            )

    def _require(self, capability: str) -> None:
        """Refuse, in one line, what the family does not declare (see `Capabilities`)."""
        if not self.capabilities.to_dict()[capability]:
            raise CollabkitError(lacks(self.trained, capability))

    def _require_ratings(self, what: str) -> None:
        """Refuse stars from a ranking model, naming both ways in to its ranked lists (the same
        refusal reaches the library, `collabkit predict` and the service)."""
        if not self.capabilities.ratings:
            raise CollabkitError(
                f"model {self.trained.name!r} ranks items and does not predict ratings, so it cannot "
                f"{what} stars: use `collabkit recommend` or `Recommender.recommend` for its ranked "
                "lists, or a rating model (dotbias) for stars"
            )

    def _clip(self, ratings: np.ndarray) -> np.ndarray:
        """A rating model's ratings clipped to the training ratings' range (scores pass unchanged)."""
        span = self._rating_span
        if span is None:
            return ratings
        return np.clip(ratings, np.float32(span[0]), np.float32(span[1])).astype(ratings.dtype, copy=False)

    def _batch(
        self, users: list[Any], idx: np.ndarray, scores: np.ndarray, order: np.ndarray | None = None
    ) -> BatchRecommendations:
        """The result arrays, the model's ratings clipped; `order` (a penalty's scores) becomes
        `scores`, and the model's own `model_scores`."""
        safe = np.where(idx >= 0, idx, 0)
        ids = self._ids
        titles = self._titles[safe]
        titles[idx < 0] = None
        own = self._clip(scores)
        return BatchRecommendations(
            users, idx, ids[safe], titles, own if order is None else order,
            score_kind=self.model.score_kind, model_scores=None if order is None else own,
        )  # fmt: skip

    @cached_property
    def _rating_span(self) -> tuple[float, float] | None:
        """The training ratings' range for a rating model (None: scores, or no training rows)."""
        return self.trained.rating_range() if self.model.score_kind == "rating" else None

    @cached_property
    def _ids(self) -> np.ndarray:
        ids = np.empty(len(self.items), dtype=object)
        ids[:] = list(self.items)
        ids[0] = None  # `#na#` is padding, never an answer
        return ids

    @cached_property
    def _titles(self) -> np.ndarray:
        return np.array([self.title(i) for i in self.items], dtype=object)


WIDE_ROW = 4096  # a user row wider than this (a ranking model's catalogue- or user-wide row) ...
MEAN_SAMPLE = 5_000  # ... is averaged over at most this many users (a seeded sample) for `popular`


def item_candidates(trained: TrainedModel, min_count: int) -> Tensor:
    """(n_items,) bool: the items with at least `min_count` (>= 1) training ratings, never `#na#`."""
    min_count = args.whole("min_count", min_count, 1)  # at least 1: items need training ratings
    cand = trained.item_counts >= min_count  # beyond any count: no item, not an overflow
    scored = trained.model.scored_items()  # EASE under an item cap scores only the items it kept
    if scored is not None:
        cand &= scored.cpu()
    cand[0] = False  # `#na#` is never an answer
    return cand


def nearest_items(
    trained: TrainedModel, items: Sequence[Any], n: int, min_count: int = MIN_COUNT
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the n items nearest raw `items` (their mean direction).

    The query items, and items with the same title as a query (one film under two ids), are never
    returned; query items must have training ratings. The unit vectors are the bundle's, made once.
    """
    if not type(trained.model).capabilities().item_vectors:
        raise CollabkitError(lacks(trained, "item_vectors"))
    if not len(items):
        raise CollabkitError("similar_items needs at least one item")
    q_idx = trained.items.encode(list(items), "error")
    for q, i in zip(items, q_idx, strict=True):
        if trained.item_counts[i] == 0:
            raise UnknownIdError(f"item {q!r} has no training ratings: its vector is untrained noise")
    cand = item_candidates(trained, min_count)
    for q in q_idx:  # the same film under another id (ML-100k lists 18 twice) is not a neighbour
        for twin in trained.resolver.same_title(trained.items[int(q)]):
            cand[trained.items.o2i[twin]] = False
    return unit_neighbours(trained.unit_item_vectors, q_idx.tolist(), check_n(n), cand)


def nearest_users(
    trained: TrainedModel, user_idx: int, n: int, min_count: int = MIN_COUNT
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the n users nearest user index `user_idx`."""
    cand = trained.user_counts >= args.whole("min_count", min_count, 1)
    cand[0] = False
    return unit_neighbours(trained.unit_user_vectors, [user_idx], check_n(n), cand)


def check_rating(key: Any, value: Any, scale: tuple[float, float] | None) -> float:
    """`value` as a finite rating within the model's scale (its training ratings' range)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise CollabkitError(f"rating {value!r} for item {key!r} is not a number")
    try:
        r = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CollabkitError(f"rating {value!r} for item {key!r} is not a number") from None
    if not np.isfinite(r):
        raise CollabkitError(f"rating {value!r} for item {key!r} is not a finite number")
    if scale is not None and not scale[0] <= r <= scale[1]:
        raise CollabkitError(
            f"rating {value!r} for item {key!r} is outside the model's scale; "
            f"the model's ratings run from {scale[0]:g} to {scale[1]:g}"
        )
    return r
