"""Bayesian matrix factorisation by Gibbs sampling, with implicit feedback from both sides.

The rating of user u for item i is

    r_ui ~ Normal(mu + b_u + b_i + U_u . V_i, 1 / alpha)
    U_u = p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j     (N(u): the items u rated in training; SVD++)
    V_i = q_i + |N(i)|^-1/2 sum_{v in N(i)} z_v     (N(i): the users who rated i; the "flipped" side)

and, where the table has timestamps, the rating's day d: a bias b_d and a row t_d that interacts
with both sides, so the mean becomes mu + b_u + b_i + b_d + U_u . V_i + t_d . (U_u + V_i) (the day
vocabulary from the training rows only; a day with no training rating adds nothing, and so does no
day: a top-N list or a prediction without a date is at no particular day).

With `drift` (Koren 2009, "Collaborative filtering with temporal dynamics", timeSVD++'s biases), two
more terms at day t: b_{i,Bin(t)}, an item's bias in one of `time_bins` bins of equal width over the
training days, and alpha_u dev_u(t), a user's linear drift, dev_u(t) = sign(t - t_u) |t - t_u|^beta
with t_u the mean of the user's training days and beta `drift_power` (0.4). Both are linear in their
coefficients, so they are bias blocks like b_u: a scalar Normal draw per coefficient from sums by
group. The bins' prior mean stays 0 (b_i keeps the item's bias at no particular day). A day outside
the training span, or no day, gets no drift.

with Normal priors on every row whose means and precisions (one per factor and group) have
Normal-Gamma hyperpriors, and a Gamma prior on the noise precision alpha. This is the model of
Rendle, Zhang & Koren (2019), "On the difficulty of evaluating baselines", restricted to the
user-side x item-side x day interactions; "which items a user rated",
"which users rated an item" and the days come from the training rows only (their "stricter
protocol").

Every parameter is drawn from its conditional, a block at a time, vectorised:
- the biases of all users (then all items, days, item x time bins, users' drift slopes) at once:
  one scalar Normal each;
- p (then q) of all users (items) at once: one k x k Cholesky each, batched;
- y (then z), which many rows share: the joint conditional is Gaussian with precision
  alpha A^T C A + Lambda (A: the normalised implicit matrix, C: each user's k x k Gram of item rows), too
  large to factor, so it is drawn by perturb-and-solve (perturb the targets and the prior mean by their
  noise, then solve the normal equations) with a few conjugate-gradient steps from the previous draw:
  an approximate Gibbs step, exact when the steps converge.

The answer is the average prediction of the draws after burn-in, not a point estimate: every kept
draw's user and item rows are stored side by side (`keep` of them, evenly spaced), so one matrix
product scores the average of their dot products exactly, on the CPU or a GPU alike.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, NamedTuple

import torch
from pydantic import Field, model_validator
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.models.base import (
    CollabModel,
    Explanation,
    ModelConfig,
    numeric_failure,
    register,
    require_finite,
)
from collabkit.models.settings import MAX_FACTORS, FamilySettings
from collabkit.models.sparse import last_of_each

Implicit = Literal["both", "user", "item", "none"]
CG_STEPS = 10  # preconditioned conjugate-gradient steps per draw of the implicit rows, from the previous draw
PRIOR_SHAPE = 1.0  # Gamma(1, 1) on precisions, Normal(0, 1 / (1 * lambda)) on group means: vague
MAX_DAYS = 100_000  # 274 years of days: a wider span means the timestamps are not Unix seconds
OUTER_CHUNK = 1 << 16  # ratings whose k x k outer products are summed at once, in float32
MAX_BINS = 10_000  # time bins of the item-bias drift
DRIFT_DEFAULT = False  # chosen on a validation part of ML-100k u1.base: see BayesianMF's docstring
# every setting a config.json held before the drift settings were added (they load with drift off)
BEFORE_DRIFT = frozenset(
    {"n_factors", "samples", "burn_in", "keep", "implicit", "days", "first_day", "n_days"}
)


class BayesSettings(FamilySettings):
    n_factors: int = Field(10, ge=1, le=MAX_FACTORS, description="factors per user and item")
    samples: int = Field(300, ge=2, le=100_000, description="Gibbs sweeps in all, burn-in included")
    burn_in: int = Field(50, ge=0, le=100_000, description="first sweeps discarded")
    keep: int = Field(64, ge=1, le=4096, description="draws kept for prediction, evenly spaced")
    implicit: Implicit = Field(
        "both", description="implicit feedback: both, user (items each user rated), item, none"
    )
    days: bool = Field(True, description="the rating's day as a feature (needs timestamps)")
    first_day: int | None = Field(None, description="from the data: the first training day")
    n_days: int = Field(0, ge=0, le=MAX_DAYS, description="from the data: days spanned")
    drift: bool = Field(
        DRIFT_DEFAULT,
        description="bias drift (needs timestamps): an item bias per time bin, a linear drift per user",
    )
    time_bins: int = Field(
        30, ge=1, le=MAX_BINS, description="with drift: time bins of equal width over the training days"
    )
    drift_power: float = Field(
        0.4, ge=0.0, le=1.0, description="with drift: beta of dev_u(t) = sign(t - t_u) |t - t_u|^beta"
    )

    @model_validator(mode="before")
    @classmethod
    def _saved_before_drift(cls, values: Any) -> Any:
        """A config.json written before drift existed holds exactly the older settings: its model
        has no drift tables, so it loads with drift off."""
        if isinstance(values, dict) and set(values) == BEFORE_DRIFT:
            return {**values, "drift": False}
        return values

    @model_validator(mode="after")
    def _burn_in_leaves_draws(self) -> BayesSettings:
        if self.burn_in >= self.samples:
            raise ValueError(f"burn_in ({self.burn_in}) must be below samples ({self.samples})")
        return self

    @property
    def kept(self) -> int:
        """The draws stored: at most `keep` of the sweeps after burn-in."""
        return min(self.keep, self.samples - self.burn_in)


@register("bayesmf")
class BayesianMF(CollabModel):
    """Bayesian MF with implicit user and item feedback (Gibbs sampling), the average of its draws.

    Defaults (rank 10, 300 sweeps, 50 burn-in, both implicit sides) follow myFM's MovieLens setting
    at rank 10; see bench/accuracy.py for the figures.

    Drift is off by default: on a validation part of ML-100k u1.base (a random 10%, split seed 0;
    u1.test unread), over four sampler seeds (42, 1, 2, 3), RMSE 0.8842 ± 0.0014 without drift and
    0.8850 ± 0.0011 with it (30 bins, beta 0.4): no gain beyond the seeds' spread, ML-100k's users
    rating mostly within a few days. `-o drift=true` turns it on.
    """

    trains_by_gradient = False
    has_biases = True
    can_explain = True
    default_fold_in_strength = 1.0

    user_factors: Tensor  # (n_users, kept, k): U_u of each kept draw
    item_factors: Tensor  # (n_items, kept, k): V_i of each kept draw
    user_bias: Tensor  # (n_users,) posterior mean
    item_bias: Tensor  # (n_items,)
    offset: Tensor  # () the training mean
    bounds: Tensor  # (2,) lowest and highest training rating: predictions are clipped into them
    day_factors: Tensor  # (n_days, kept, k): t_d of each kept draw (only with days)
    day_bias: Tensor  # (n_days,) posterior mean (only with days)
    day_seen: Tensor  # (n_days,) bool: days with training ratings; any other day adds nothing
    item_bin_bias: Tensor  # (n_items, time_bins) posterior mean of b_{i,Bin(t)} (only with drift)
    user_drift: Tensor  # (n_users,) posterior mean of the drift slope alpha_u (only with drift)
    user_day: Tensor  # (n_users,) t_u: the mean of the user's training days, from first_day (with drift)

    settings: BayesSettings
    Settings = BayesSettings

    def __init__(self, config: ModelConfig) -> None:
        self.n_users, self.n_items = config.n_users, config.n_items
        self.settings = config.settings  # type: ignore[assignment]  # checked by ModelConfig
        s, k = self.settings, self.settings.n_factors
        self.register_buffer("user_factors", torch.zeros(self.n_users, s.kept, k))
        self.register_buffer("item_factors", torch.zeros(self.n_items, s.kept, k))
        self.register_buffer("user_bias", torch.zeros(self.n_users))
        self.register_buffer("item_bias", torch.zeros(self.n_items))
        self.register_buffer("offset", torch.zeros(()))
        self.register_buffer("bounds", torch.tensor([-math.inf, math.inf]))
        if self.takes_days and s.days:
            self.register_buffer("day_factors", torch.zeros(s.n_days, s.kept, k))
            self.register_buffer("day_bias", torch.zeros(s.n_days))
            self.register_buffer("day_seen", torch.zeros(s.n_days, dtype=torch.bool))
        if self.takes_days and s.drift:
            self.register_buffer("item_bin_bias", torch.zeros(self.n_items, s.time_bins))
            self.register_buffer("user_drift", torch.zeros(self.n_users))
            self.register_buffer("user_day", torch.zeros(self.n_users))

    @classmethod
    def from_config(cls, config: ModelConfig) -> BayesianMF:
        return cls(config)

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        """The day vocabulary (first day, span) from the training rows' timestamps, where there are any
        (for the day effects and for the drift)."""
        timed = settings.get("days", True) or settings.get("drift", DRIFT_DEFAULT)
        if not timed or settings.get("first_day") is not None:
            return settings
        days = dls.train_days() if hasattr(dls, "train_days") else None
        if days is None or not len(days):
            return {**settings, "n_days": 0}
        first, span = int(days.min()), int(days.max() - days.min()) + 1
        if span > MAX_DAYS:
            raise CollabkitError(
                f"bayesmf: the training timestamps span {span:,} days; are they Unix seconds or dates? "
                "Give -o days=false -o drift=false to train without time effects"
            )
        return {**settings, "first_day": first, "n_days": span}

    @property
    def takes_days(self) -> bool:
        """Whether pairs may carry a third column, the rating's day (days since 1970, UTC)."""
        s = self.settings
        return (s.days or s.drift) and s.first_day is not None and s.n_days > 0

    def _day_index(self, x: Tensor) -> Tensor | None:
        """(N,) each pair's day in the vocabulary, n_days where it has none; None: no pair has a day."""
        if not self.takes_days or x.shape[1] < 3:
            return None
        d = x[:, 2].to(self.user_factors.device) - int(self.settings.first_day or 0)
        n = self.settings.n_days
        return torch.where((d >= 0) & (d < n), d, torch.full_like(d, n))

    def _time_bin(self, days: Tensor) -> Tensor:
        """(N,) each day's time bin (bins of equal width over the training span), time_bins for none."""
        n, bins = self.settings.n_days, self.settings.time_bins
        return torch.where(days < n, days * bins // n, torch.full_like(days, bins))

    def _deviation(self, users: Tensor, days: Tensor) -> Tensor:
        """(N,) float64 dev_u(t) = sign(t - t_u) |t - t_u|^beta, 0 where the rating has no day."""
        gap = days.double() - self.user_day[users].double()
        dev = gap.sign() * gap.abs().pow(self.settings.drift_power)
        return torch.where(days < self.settings.n_days, dev, torch.zeros_like(dev))

    def _drift_features(self, rows: Rows) -> Drift | None:
        """t_u from the training rows' days (kept in `user_day`), then each rating's time bin and
        dev_u(t); None without drift or without days in the training pairs."""
        if not self.settings.drift or rows.d is None:
            return None
        dated = rows.d < self.settings.n_days
        count = torch.bincount(rows.u[dated], minlength=self.n_users).double()
        total = torch.zeros(self.n_users, dtype=torch.float64, device=rows.u.device)
        total.index_add_(0, rows.u[dated], rows.d[dated].double())
        self.user_day.copy_(total / count.clamp_min(1))
        bins = self._time_bin(rows.d)
        return Drift(bins, self.settings.time_bins, self._deviation(rows.u, rows.d), count > 0)

    # -- fitting ---------------------------------------------------------------------------------
    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        """Run the sampler on every training pair (a repeated pair keeps its last rating)."""
        self._check_fit_input(x, y)
        dev = self.user_factors.device
        key, last = last_of_each(x[:, 0].to(dev) * self.n_items + x[:, 1].to(dev))
        days = self._day_index(x)
        s = self.settings
        rows = Rows(
            key // self.n_items, key % self.n_items, y.to(dev)[last].double(), self.n_users, self.n_items,
            days=None if days is None else days[last], n_days=s.n_days,
        )  # fmt: skip
        drift = self._drift_features(rows)
        sampler = GibbsSampler(rows, s.n_factors, s.implicit, day_effects=s.days, drift=drift)
        every = (s.samples - s.burn_in) / s.kept
        marks = {s.burn_in + int(every * j) for j in range(s.kept)}  # the sweeps whose draws are kept
        kept_u, kept_v, kept_t = [], [], []
        sums = {name: torch.zeros_like(block.values) for name, block in sampler.biases.items()}
        for sweep in range(s.samples):
            sampler.sweep()
            if sweep in marks:
                u, v = sampler.sides()
                kept_u.append(u.float())
                kept_v.append(v.float())
                for name, block in sampler.biases.items():
                    sums[name] += block.values
                if sampler.t is not None:
                    kept_t.append(sampler.t.values.float())
        n = len(kept_u)
        if self.takes_days and s.days:  # with no day in x, every day's row stays 0 and adds nothing
            if kept_t:
                self.day_factors.copy_(torch.stack(kept_t, 1))
                self.day_bias.copy_(sums["day"][: s.n_days] / n)
            self.day_seen.copy_(rows.day_count[: s.n_days] > 0)
        if drift is not None:  # the last entry of the bins: no day, 0
            self.item_bin_bias.copy_(sums["item_bin"][:-1].reshape(self.n_items, s.time_bins) / n)
            self.user_drift.copy_(torch.where(drift.dated, sums["user_drift"] / n, 0.0))
        users, items = torch.stack(kept_u, 1), torch.stack(kept_v, 1)  # (n_users, n, k), (n_items, n, k)
        require_finite(
            self.name, "the Gibbs sampler", {"user_factors": users, "item_factors": items},
            {"n_factors": s.n_factors, "samples": s.samples}, "check the ratings for extreme values",
        )  # fmt: skip
        self.user_factors.copy_(users)
        self.item_factors.copy_(items)
        self.user_bias.copy_(sums["user"] / n)
        self.item_bias.copy_(sums["item"] / n)
        self.offset.fill_(sampler.mu)
        self.bounds.copy_(torch.stack([rows.r.min(), rows.r.max()]).float())

    def _check_fit_input(self, x: Tensor, y: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] not in (2, 3) or len(x) != len(y):
            raise CollabkitError(
                f"{self.name}: fit_direct needs x (N, 2) user/item indices (or (N, 3) with the day) and "
                "y (N,) ratings, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if len(x) == 0:
            raise CollabkitError(f"{self.name}: no training ratings to fit on")
        if (
            int(x[:, :2].min()) < 0
            or int(x[:, 0].max()) >= self.n_users
            or int(x[:, 1].max()) >= self.n_items
        ):
            raise CollabkitError(
                f"{self.name}: training indices outside the model's {self.n_users} users and "
                f"{self.n_items} items (the model was built for another table)"
            )
        if not bool(torch.isfinite(y).all()):
            raise CollabkitError(f"{self.name}: the training ratings hold NaN or infinite values")

    # -- scoring: [U of each draw / sqrt(n), b_u, 1] . [V of each draw / sqrt(n), 1, mu + b_i] -------
    def forward(self, x: Tensor) -> Tensor:
        users, items = x[:, 0], x[:, 1]
        n = self.user_factors.shape[1]
        dots = (self.user_factors[users] * self.item_factors[items]).sum(dim=(1, 2)) / n
        raw = self.offset + self.user_bias[users] + self.item_bias[items] + dots
        days = self._day_index(x)
        if days is not None and self.settings.days:  # the rating's day, where the model has seen it
            n_days = self.settings.n_days  # days[k] == n_days: no day; else one seen in training or not
            known = (days < n_days) & self.day_seen[days.clamp_max(n_days - 1)]
            d, i = days[known], items[known]
            both = self.user_factors[users[known]] + self.item_factors[i]
            day_dots = (self.day_factors[d] * both).sum(dim=(1, 2)) / n
            raw = raw.index_add(0, torch.nonzero(known)[:, 0], self.day_bias[d] + day_dots)
        if days is not None and self.settings.drift:  # a day outside the training span: no drift
            bins, last = self._time_bin(days), self.settings.time_bins - 1
            by_bin = torch.where(bins <= last, self.item_bin_bias[items, bins.clamp_max(last)], 0.0)
            raw = raw + by_bin + (self.user_drift[users] * self._deviation(users, days)).float()
        return self.raw_to_rating(raw)

    def user_rows(self, user_idx: Tensor) -> Tensor:
        u = self.user_factors[user_idx]
        scale = u.shape[1] ** -0.5
        ones = torch.ones(len(u), 1, device=u.device)
        return torch.cat([u.flatten(1) * scale, self.user_bias[user_idx][:, None], ones], dim=1)

    def item_side(self, item_idx: Tensor) -> Tensor:
        v = self.item_factors[item_idx]
        scale = v.shape[1] ** -0.5
        ones = torch.ones(len(v), 1, device=v.device)
        bias = (self.offset + self.item_bias[item_idx])[:, None]
        return torch.cat([v.flatten(1) * scale, ones, bias], dim=1).T.contiguous()

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        return raw.clamp(float(self.bounds[0]), float(self.bounds[1]))

    def user_vectors(self) -> Tensor:
        """Every kept draw's user row side by side, scaled so dot products average over draws."""
        return self.user_factors.flatten(1) * self.user_factors.shape[1] ** -0.5

    def item_vectors(self) -> Tensor:
        return self.item_factors.flatten(1) * self.item_factors.shape[1] ** -0.5

    def user_biases(self) -> Tensor:
        return self.user_bias

    def item_biases(self) -> Tensor:
        return self.item_bias

    def explain(self, user_idx: int, item_idx: int) -> Explanation:
        """offset + biases + one product per factor, each averaged over the kept draws."""
        n = self.user_factors.shape[1]
        products = (self.user_factors[user_idx].double() * self.item_factors[item_idx].double()).sum(0) / n
        ub, ib = float(self.user_bias[user_idx]), float(self.item_bias[item_idx])
        off = float(self.offset)
        return Explanation(off, ub, ib, products.cpu(), off + ub + ib + float(products.sum()))

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(d,) a new user's row: for every kept draw, one ridge solve of [U, b_u] against that draw's
        item rows and the mean item biases, shrunk towards `prior` (the average trained user's row)
        with weight `strength`; the user's bias is the average of the draws' (float64, CPU)."""
        n, k = self.item_factors.shape[1], self.item_factors.shape[2]
        idx = item_idx.to(self.item_factors.device)
        v = self.item_factors[idx].double().cpu().transpose(0, 1)  # (n, m, k)
        m = v.shape[1]
        target = ratings.double().cpu() - float(self.offset) - self.item_bias[idx].double().cpu()  # (m,)
        design = torch.cat([v, torch.ones(n, m, 1, dtype=torch.float64)], dim=2)  # (n, m, k + 1)
        p = prior.double().cpu()
        start = torch.cat([p[: n * k].reshape(n, k) * n**0.5, p[n * k : n * k + 1].expand(n, 1)], dim=1)
        if strength <= 0 and m < k + 1:
            raise numeric_failure(
                self.name, "folding in the new user", {"strength": strength},
                f"with strength 0, {m} ratings cannot determine {k + 1} unknowns: give a strength above 0",
            )  # fmt: skip
        resid = target[None, :] - (design @ start[:, :, None])[:, :, 0]  # (n, m)
        gram = design.transpose(1, 2) @ design + strength * torch.eye(k + 1, dtype=torch.float64)
        try:
            sol = start + torch.linalg.solve(gram, (design.transpose(1, 2) @ resid[:, :, None])[:, :, 0])
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name, "folding in the new user", {"strength": strength}, "give a strength above 0"
            ) from None
        row = torch.cat(
            [sol[:, :k].flatten() * n**-0.5, sol[:, k].mean()[None], torch.ones(1, dtype=torch.float64)]
        )
        return row.float().to(prior.device)


class Rows:
    """The training ratings, sorted by user, with the sparse patterns the sampler sums over: a sum
    over each user's (or item's) ratings is one sparse-dense product, not a scatter of N rows."""

    def __init__(
        self, users: Tensor, items: Tensor, r: Tensor, n_users: int, n_items: int,
        days: Tensor | None = None, n_days: int = 0,
    ) -> None:  # fmt: skip
        order = torch.argsort(users * n_items + items)
        self.u, self.i, self.r = users[order], items[order], r[order]
        self.n_users, self.n_items, self.n_days = n_users, n_items, n_days
        # each rating's day, n_days where it has none (that row of the day tables stays 0)
        self.d = None if days is None else days[order]
        self.day_count = (
            torch.zeros(n_days + 1, dtype=torch.float64, device=r.device)
            if self.d is None
            else torch.bincount(self.d, minlength=n_days + 1).double()
        )
        self.user_count = torch.bincount(self.u, minlength=n_users).double()
        self.item_count = torch.bincount(self.i, minlength=n_items).double()
        self.by_item = torch.argsort(self.i * n_users + self.u)  # the rows in item order
        self.user_crow = _crow(self.user_count, n_users, self.u.device)
        self.item_crow = _crow(self.item_count, n_items, self.u.device)
        ones = torch.ones_like(self.r)
        # A: (n_users, n_items), a user's rated items weighted 1/sqrt(|N(u)|); B likewise for items
        self.a = self.matrix("user", self.user_count.clamp_min(1).rsqrt()[self.u])
        self.a_t = self.matrix("item", self.user_count.clamp_min(1).rsqrt()[self.u])
        self.b = self.matrix("item", self.item_count.clamp_min(1).rsqrt()[self.i])
        self.b_t = self.matrix("user", self.item_count.clamp_min(1).rsqrt()[self.i])
        # their squares, transposed: the diagonal blocks that precondition the implicit draws
        self.a_t_sq = self.matrix("item", self.user_count.clamp_min(1).reciprocal()[self.u])
        self.b_t_sq = self.matrix("user", self.item_count.clamp_min(1).reciprocal()[self.i])
        self.ones = {"user": self.matrix("user", ones), "item": self.matrix("item", ones)}
        self._pattern = self.matrix("user", torch.zeros_like(self.r))

    def matrix(self, side: Literal["user", "item"], values: Tensor) -> Tensor:
        """The (n_users, n_items) CSR (side "user") or its transpose ("item") with `values` (N,),
        given in row order, at the rated cells."""
        if side == "user":
            return _csr(self.user_crow, self.i, values, (self.n_users, self.n_items))
        return _csr(self.item_crow, self.u[self.by_item], values[self.by_item], (self.n_items, self.n_users))

    def dots(self, users: Tensor, items: Tensor) -> Tensor:
        """(N,) users[u] . items[i] for every rating, in row order (one sampled product)."""
        return torch.sparse.sampled_addmm(self._pattern, users, items.T, beta=0.0).values()

    def per_row_sum(self, side: Literal["user", "item"], weights: Tensor, other: Tensor) -> Tensor:
        """(n, k) sum over each user's (item's) ratings of weight x the other side's row."""
        return self.matrix(side, weights) @ other

    def grams(self, side: Literal["user", "item"], other: Tensor) -> Tensor:
        """(n, k, k) sum of outer products of the other side's rows over each user's (item's) ratings."""
        k = other.shape[1]
        outer = (other[:, :, None] * other[:, None, :]).reshape(len(other), k * k)
        return (self.ones[side] @ outer).reshape(-1, k, k)

    def index(self, side: Literal["user", "item", "day"]) -> Tensor:
        """(N,) each rating's user, item or day (n_days: none)."""
        if side == "day":
            assert self.d is not None
            return self.d
        return self.u if side == "user" else self.i

    def size(self, side: Literal["user", "item", "day"]) -> int:
        return {"user": self.n_users, "item": self.n_items, "day": self.n_days + 1}[side]

    def sums_by(self, side: Literal["user", "item", "day"], weights: Tensor, other: Tensor) -> Tensor:
        """(n, k) sum over each user's (item's, day's) ratings of weight x that rating's row of
        `other` (N, k): the form of `per_row_sum` when the other side differs rating by rating."""
        out = torch.zeros(self.size(side), other.shape[1], dtype=other.dtype, device=other.device)
        return out.index_add_(0, self.index(side), weights[:, None] * other)

    def grams_by(self, side: Literal["user", "item", "day"], other: Tensor) -> Tensor:
        """(n, k, k) sum over each user's (item's, day's) ratings of that rating's outer product of
        `other` (N, k). The products and each chunk's sums are float32 (five times faster than
        float64 on a CPU, and each chunk's sum is short); the chunks add up in `other`'s dtype."""
        k, idx = other.shape[1], self.index(side)
        out = torch.zeros(self.size(side), k * k, dtype=other.dtype, device=other.device)
        part = torch.empty(self.size(side), k * k, dtype=torch.float32, device=other.device)
        for start in range(0, len(other), OUTER_CHUNK):
            o = other[start : start + OUTER_CHUNK].float()
            part.zero_().index_add_(
                0, idx[start : start + OUTER_CHUNK], (o[:, :, None] * o[:, None, :]).reshape(len(o), k * k)
            )
            out += part
        return out.reshape(-1, k, k)


def _crow(counts: Tensor, n: int, device: torch.device) -> Tensor:
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    torch.cumsum(counts.long(), 0, out=crow[1:])
    return crow


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products are all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class Group:
    """A group of rows (all users' p, all items' z, ...) with its prior mean and precision per factor."""

    def __init__(self, values: Tensor) -> None:
        self.values = values  # (n, k)
        k = values.shape[1]
        self.mean = torch.zeros(k, dtype=values.dtype, device=values.device)
        self.precision = torch.ones(k, dtype=values.dtype, device=values.device)

    def draw_prior(self) -> None:
        """The Normal-Gamma hyperprior's conditional: lambda_f, then mu_f (Freudenthaler et al. 2011)."""
        n, v = self.values.shape[0], self.values
        shape = PRIOR_SHAPE + (n + 1) / 2
        spread = ((v - self.mean) ** 2).sum(0) + PRIOR_SHAPE * self.mean**2
        self.precision = _gamma(torch.full_like(spread, shape), PRIOR_SHAPE + spread / 2)
        count = n + PRIOR_SHAPE
        self.mean = v.sum(0) / count + torch.randn_like(self.mean) / (count * self.precision).sqrt()


def _gamma(shape: Tensor, rate: Tensor) -> Tensor:
    return torch.distributions.Gamma(shape, rate).sample()


class Drift(NamedTuple):
    """Koren's (2009) bias drift features of the training ratings (row order)."""

    bins: Tensor  # (N,) each rating's time bin, n_bins where it has no day
    n_bins: int
    dev: Tensor  # (N,) float64 dev_u(t) of its user and day, 0 where it has no day
    dated: Tensor  # (n_users,) bool: users with a dated training rating (the others' drift is 0)


class Coefficients:
    """A block of scalar coefficients c_g under Normal(m, 1 / lambda), m and lambda with a Normal-Gamma
    hyperprior: rating n's term is w_n c_{g(n)}, with w = 1 for a bias (user, item, day, item x time
    bin) and w = dev_u(t) for a user's drift slope. Given everything else each c_g is one scalar
    Normal with precision alpha sum_n w_n^2 + lambda and mean (alpha sum_n w_n r_n + lambda m) / that.

    `pinned_last`: the last coefficient stands for "no day" and stays 0. `centred`: m stays 0 (only
    lambda is drawn), for a block that would otherwise trade a shared offset with another block.
    """

    def __init__(
        self, index: Tensor, size: int, weight: Tensor | None = None, *, pinned_last: bool = False,
        centred: bool = False,
    ) -> None:  # fmt: skip
        self.index, self.weight = index, weight  # (N,) each rating's coefficient, (N,) or None
        self.values = torch.zeros(size, dtype=torch.float64, device=index.device)
        weight_sq = (
            torch.ones(len(index), dtype=torch.float64, device=index.device) if weight is None else weight**2
        )
        self.weight_sq = torch.zeros_like(self.values).index_add_(0, index, weight_sq)  # (size,)
        self.pinned_last, self.centred = pinned_last, centred
        self.mean, self.precision = 0.0, 1.0

    def terms(self) -> Tensor:
        """(N,) each rating's w_n c_{g(n)}."""
        own = self.values[self.index]
        return own if self.weight is None else own * self.weight

    def draw(self, resid: Tensor, alpha: float) -> None:
        """Every coefficient from its conditional given `resid` (N,), the ratings less every other
        term, then the block's prior."""
        sums = torch.zeros_like(self.values).index_add_(
            0, self.index, resid if self.weight is None else resid * self.weight
        )
        precision = alpha * self.weight_sq + self.precision
        centre = (alpha * sums + self.precision * self.mean) / precision
        self.values = centre + torch.randn_like(centre) / precision.sqrt()
        if self.pinned_last:
            self.values[-1] = 0.0
        drawn = self.values[:-1] if self.pinned_last else self.values
        n = len(drawn)
        if self.centred:
            spread = float(drawn.square().sum())
            self.precision = float(
                _gamma(torch.tensor(PRIOR_SHAPE + n / 2), torch.tensor(PRIOR_SHAPE + spread / 2))
            )
            return
        spread = float(((drawn - self.mean) ** 2).sum()) + PRIOR_SHAPE * self.mean**2
        self.precision = float(
            _gamma(torch.tensor(PRIOR_SHAPE + (n + 1) / 2), torch.tensor(PRIOR_SHAPE + spread / 2))
        )
        self.mean = float(drawn.sum()) / (n + PRIOR_SHAPE) + float(torch.randn(())) / math.sqrt(
            (n + PRIOR_SHAPE) * self.precision
        )


class GibbsSampler:
    """The sampler's state and one sweep over every block (float64: the Gram blocks and the noise
    precision are sums over many ratings).

    `day_effects`: with days in `rows`, the day bias and day rows; `drift`: the bias drift blocks."""

    def __init__(
        self, rows: Rows, k: int, implicit: Implicit, day_effects: bool = True, drift: Drift | None = None
    ) -> None:
        self.rows, self.k = rows, k
        dev, dt = rows.r.device, torch.float64
        self.mu = float(rows.r.mean())
        self.alpha = 1.0 / max(float(rows.r.var(unbiased=False)) if len(rows.r) > 1 else 1.0, 1e-6)
        # the bias blocks, drawn in this order: user, item, then day, item x time bin, user drift
        self.biases = {"user": Coefficients(rows.u, rows.n_users), "item": Coefficients(rows.i, rows.n_items)}
        if rows.d is not None and day_effects:
            self.biases["day"] = Coefficients(rows.d, rows.n_days + 1, pinned_last=True)
        if drift is not None:  # the bins' mean stays 0: b_i keeps the item's bias on no particular day
            n = rows.n_items * drift.n_bins
            at = torch.where(drift.bins < drift.n_bins, rows.i * drift.n_bins + drift.bins, n)
            self.biases["item_bin"] = Coefficients(at, n + 1, pinned_last=True, centred=True)
            self.biases["user_drift"] = Coefficients(rows.u, rows.n_users, drift.dev)
        days = "day" in self.biases
        self.t = Group(torch.zeros(rows.n_days, k, dtype=dt, device=dev)) if days else None
        self.p = Group(torch.randn(rows.n_users, k, dtype=dt, device=dev) * 0.1)
        self.q = Group(torch.randn(rows.n_items, k, dtype=dt, device=dev) * 0.1)
        self.y = (
            Group(torch.zeros(rows.n_items, k, dtype=dt, device=dev))
            if implicit in ("both", "user")
            else None
        )
        self.z = (
            Group(torch.zeros(rows.n_users, k, dtype=dt, device=dev))
            if implicit in ("both", "item")
            else None
        )

    def sides(self) -> tuple[Tensor, Tensor]:
        """(n_users, k) U and (n_items, k) V of the current draw."""
        u = self.p.values if self.y is None else self.p.values + self.rows.a @ self.y.values
        v = self.q.values if self.z is None else self.q.values + self.rows.b @ self.z.values
        return u, v

    def day_rows(self) -> Tensor | None:
        """(N, k) each rating's day row t_d (0 for none), or None without days."""
        if self.t is None:
            return None
        zero = torch.zeros(1, self.k, dtype=self.t.values.dtype, device=self.t.values.device)
        return torch.cat([self.t.values, zero])[self.rows.index("day")]

    def sweep(self) -> None:
        """One draw of every block: biases, the user side (p, y), the days, the item side (q, z),
        the noise precision, then every group's prior."""
        if self.t is not None:
            self._sweep_with_days()
        else:
            rows = self.rows
            u, v = self.sides()
            self._draw_biases(rows.dots(u, v))
            base = self._base()  # what the factors explain
            gram = rows.grams("user", v)  # the user side: p, then y, against the current V
            self._draw_rows(self.p, "user", gram, base - rows.dots(u - self.p.values, v), v)
            if self.y is not None:
                target = base - rows.dots(self.p.values, v)
                self._draw_implicit(self.y, rows.a, rows.a_t, rows.a_t_sq, gram, target, v, "user")
            u, _ = self.sides()
            gram = rows.grams("item", u)  # the item side: q, then z, against the new U
            self._draw_rows(self.q, "item", gram, base - rows.dots(u, v - self.q.values), u)
            if self.z is not None:
                target = base - rows.dots(u, self.q.values)
                self._draw_implicit(self.z, rows.b, rows.b_t, rows.b_t_sq, gram, target, u, "item")
            u, v = self.sides()
            self._draw_noise(base - rows.dots(u, v))
        for group in (self.p, self.q, self.y, self.z, self.t):
            if group is not None:
                group.draw_prior()

    def _sweep_with_days(self) -> None:
        """The sweep where each rating has a day d: its mean is mu + b_u + b_i + b_d + U.V + t_d.U +
        t_d.V (the day interacts with both sides, as in a factorization machine), so every factor
        block is drawn against rows that differ rating by rating."""
        rows = self.rows
        u, v = self.sides()
        t = self.day_rows()
        assert t is not None and rows.d is not None
        ur, vr = u[rows.u], v[rows.i]  # (N, k) each rating's user and item row
        self._draw_biases(((ur + t) * vr).sum(1) + (t * ur).sum(1))
        base = self._base()
        # the user side against V + t_d
        vt = vr + t
        gram = rows.grams_by("user", vt)
        target = base - (t * vr).sum(1) - ((ur - self.p.values[rows.u]) * vt).sum(1)
        self._draw_rows(self.p, "user", gram, target, vt, per_rating=True)
        if self.y is not None:
            target = base - (t * vr).sum(1) - (self.p.values[rows.u] * vt).sum(1)
            self._draw_implicit(
                self.y, rows.a, rows.a_t, rows.a_t_sq, gram, target, vt, "user", per_rating=True
            )
        u, _ = self.sides()
        ur = u[rows.u]
        self._draw_days(base - (ur * vr).sum(1), ur + vr)  # the days against U + V
        t = self.day_rows()
        assert t is not None
        # the item side against U + t_d
        ut = ur + t
        gram = rows.grams_by("item", ut)
        target = base - (t * ur).sum(1) - (ut * (vr - self.q.values[rows.i])).sum(1)
        self._draw_rows(self.q, "item", gram, target, ut, per_rating=True)
        if self.z is not None:
            target = base - (t * ur).sum(1) - (ut * self.q.values[rows.i]).sum(1)
            self._draw_implicit(
                self.z, rows.b, rows.b_t, rows.b_t_sq, gram, target, ut, "item", per_rating=True
            )
        _, v = self.sides()
        vr = v[rows.i]
        self._draw_noise(base - ((ur + t) * vr).sum(1) - (t * ur).sum(1))

    def _draw_noise(self, resid: Tensor) -> None:
        """The noise precision alpha from its Gamma conditional, given the residuals."""
        self.alpha = float(
            _gamma(
                torch.tensor(PRIOR_SHAPE + len(resid) / 2),
                torch.tensor(PRIOR_SHAPE + float(resid.square().sum()) / 2),
            )
        )

    def _base(self) -> Tensor:
        """(N,) each rating less the mean and every bias term: what the factors explain."""
        base = self.rows.r - self.mu
        for block in self.biases.values():
            base = base - block.terms()
        return base

    def _draw_biases(self, dots: Tensor) -> None:
        """Every bias block (user, item, day, drift) from its conditional given `dots` (N,), the
        factors' part of each rating, one block after another."""
        for block in self.biases.values():
            total = sum(b.terms() for b in self.biases.values())
            block.draw(self.rows.r - self.mu - (total - block.terms()) - dots, self.alpha)

    def _draw_days(self, target: Tensor, other: Tensor) -> None:
        """Every day's row t_d from its Normal conditional: the day's ratings against `other` (N, k),
        each rating's U + V; the "no day" entry is left out."""
        assert self.t is not None
        gram = self.rows.grams_by("day", other)[:-1]
        sums = self.rows.sums_by("day", target, other)[:-1]
        self._draw_gaussian(self.t, gram, sums)

    def _draw_rows(
        self, group: Group, side: Literal["user", "item"], gram: Tensor, target: Tensor, other: Tensor,
        per_rating: bool = False,
    ) -> None:  # fmt: skip
        """Every row of `group` from its Normal conditional: precision alpha G + diag(lambda).
        `other`: the other side's rows (n_other, k), or with `per_rating` each rating's (N, k)."""
        sums = (
            self.rows.sums_by(side, target, other)
            if per_rating
            else self.rows.per_row_sum(side, target, other)
        )
        self._draw_gaussian(group, gram, sums)

    def _draw_gaussian(self, group: Group, gram: Tensor, sums: Tensor) -> None:
        """Every row from Normal(precision^-1 rhs, precision^-1), precision = alpha G + diag(lambda),
        rhs = alpha sums + lambda mean: one batched Cholesky."""
        precision = self.alpha * gram + torch.diag_embed(group.precision.expand(len(gram), -1))
        rhs = self.alpha * sums + group.precision * group.mean
        chol, info = torch.linalg.cholesky_ex(precision)
        if bool((info != 0).any()):
            raise numeric_failure("bayesmf", "a conditional draw", {"n_factors": self.k}, "check the ratings")
        centre = torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]
        noise = torch.linalg.solve_triangular(
            chol.transpose(1, 2), torch.randn_like(centre)[:, :, None], upper=True
        )
        group.values = centre + noise[:, :, 0]

    def _draw_implicit(
        self, group: Group, a: Tensor, a_t: Tensor, a_t_sq: Tensor, gram: Tensor, target: Tensor,
        other: Tensor, side: Literal["user", "item"], per_rating: bool = False,
    ) -> None:  # fmt: skip
        """Perturb-and-solve: the implicit rows minimising alpha |target + e - (A Y)_row . other|^2 +
        |Lambda^1/2 (Y - mean - d)|^2, e and d Normal noise, by conjugate gradients from the current
        draw, preconditioned by each row's own k x k block (alpha sum_u A_uj^2 C_u + Lambda)."""
        rows, alpha, lam = self.rows, self.alpha, group.precision
        noisy = target + torch.randn_like(target) / math.sqrt(alpha)
        sums = rows.sums_by(side, noisy, other) if per_rating else rows.per_row_sum(side, noisy, other)
        rhs = alpha * (a_t @ sums)
        rhs += lam * (group.mean + torch.randn_like(group.values) / lam.sqrt())
        k = gram.shape[1]
        blocks = alpha * (a_t_sq @ gram.reshape(len(gram), k * k)).reshape(-1, k, k) + torch.diag(lam)
        inverse, info = torch.linalg.inv_ex(blocks)  # applied every step: a product, not a solve
        if bool((info != 0).any()):
            raise numeric_failure("bayesmf", "a conditional draw", {"n_factors": self.k}, "check the ratings")

        def times(w: Tensor) -> Tensor:  # (alpha A^T C A + Lambda) w
            aw = a @ w
            return alpha * (a_t @ (gram @ aw[:, :, None])[:, :, 0]) + lam * w

        def precondition(r: Tensor) -> Tensor:
            return (inverse @ r[:, :, None])[:, :, 0]

        x = group.values
        r = rhs - times(x)
        z = precondition(r)
        d = z
        rz = (r * z).sum()
        for _ in range(CG_STEPS):
            ad = times(d)
            step = rz / (d * ad).sum().clamp_min(1e-300)
            x = x + step * d
            r = r - step * ad
            z = precondition(r)
            rz_new = (r * z).sum()
            d = z + (rz_new / rz.clamp_min(1e-300)) * d
            rz = rz_new
        group.values = x
