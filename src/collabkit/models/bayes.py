"""Bayesian matrix factorisation by Gibbs sampling, with implicit feedback from both sides.

The rating of user u for item i is

    r_ui ~ Normal(mu + b_u + b_i + U_u . V_i, 1 / alpha)
    U_u = p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j     (N(u): the items u rated in training; SVD++)
    V_i = q_i + |N(i)|^-1/2 sum_{v in N(i)} z_v     (N(i): the users who rated i; the "flipped" side)

with Normal priors on every row whose means and precisions (one per factor and group) have
Normal-Gamma hyperpriors, and a Gamma prior on the noise precision alpha. This is the model of
Rendle, Zhang & Koren (2019), "On the difficulty of evaluating baselines", without its day feature,
restricted to the user-side x item-side interactions; "which items a user rated" and "which users
rated an item" come from the training rows only (their "stricter protocol").

Every parameter is drawn from its conditional, a block at a time, vectorised:
- the biases of all users (then all items) at once: one scalar Normal each;
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
from typing import Literal

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


class BayesSettings(FamilySettings):
    n_factors: int = Field(10, ge=1, le=MAX_FACTORS, description="factors per user and item")
    samples: int = Field(300, ge=2, le=100_000, description="Gibbs sweeps in all, burn-in included")
    burn_in: int = Field(50, ge=0, le=100_000, description="first sweeps discarded")
    keep: int = Field(64, ge=1, le=4096, description="draws kept for prediction, evenly spaced")
    implicit: Implicit = Field(
        "both", description="implicit feedback: both, user (items each user rated), item, none"
    )

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

    @classmethod
    def from_config(cls, config: ModelConfig) -> BayesianMF:
        return cls(config)

    # -- fitting ---------------------------------------------------------------------------------
    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        """Run the sampler on every training pair (a repeated pair keeps its last rating)."""
        self._check_fit_input(x, y)
        dev = self.user_factors.device
        key, last = last_of_each(x[:, 0].to(dev) * self.n_items + x[:, 1].to(dev))
        rows = Rows(
            key // self.n_items, key % self.n_items, y.to(dev)[last].double(), self.n_users, self.n_items
        )
        s = self.settings
        sampler = GibbsSampler(rows, s.n_factors, s.implicit)
        every = (s.samples - s.burn_in) / s.kept
        marks = {s.burn_in + int(every * j) for j in range(s.kept)}  # the sweeps whose draws are kept
        kept_u, kept_v, sum_bu, sum_bi = [], [], torch.zeros_like(sampler.bu), torch.zeros_like(sampler.bi)
        for sweep in range(s.samples):
            sampler.sweep()
            if sweep in marks:
                u, v = sampler.sides()
                kept_u.append(u.float())
                kept_v.append(v.float())
                sum_bu += sampler.bu
                sum_bi += sampler.bi
        n = len(kept_u)
        users, items = torch.stack(kept_u, 1), torch.stack(kept_v, 1)  # (n_users, n, k), (n_items, n, k)
        require_finite(
            self.name, "the Gibbs sampler", {"user_factors": users, "item_factors": items},
            {"n_factors": s.n_factors, "samples": s.samples}, "check the ratings for extreme values",
        )  # fmt: skip
        self.user_factors.copy_(users)
        self.item_factors.copy_(items)
        self.user_bias.copy_(sum_bu / n)
        self.item_bias.copy_(sum_bi / n)
        self.offset.fill_(sampler.mu)
        self.bounds.copy_(torch.stack([rows.r.min(), rows.r.max()]).float())

    def _check_fit_input(self, x: Tensor, y: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != 2 or len(x) != len(y):
            raise CollabkitError(
                f"{self.name}: fit_direct needs x (N, 2) user/item indices and y (N,) ratings, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if len(x) == 0:
            raise CollabkitError(f"{self.name}: no training ratings to fit on")
        if int(x.min()) < 0 or int(x[:, 0].max()) >= self.n_users or int(x[:, 1].max()) >= self.n_items:
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
        return self.raw_to_rating(self.offset + self.user_bias[users] + self.item_bias[items] + dots)

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

    def __init__(self, users: Tensor, items: Tensor, r: Tensor, n_users: int, n_items: int) -> None:
        order = torch.argsort(users * n_items + items)
        self.u, self.i, self.r = users[order], items[order], r[order]
        self.n_users, self.n_items = n_users, n_items
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


class GibbsSampler:
    """The sampler's state and one sweep over every block (float64: the Gram blocks and the noise
    precision are sums over many ratings)."""

    def __init__(self, rows: Rows, k: int, implicit: Implicit) -> None:
        self.rows, self.k = rows, k
        dev, dt = rows.r.device, torch.float64
        self.mu = float(rows.r.mean())
        self.alpha = 1.0 / max(float(rows.r.var(unbiased=False)) if len(rows.r) > 1 else 1.0, 1e-6)
        self.bu, self.bi = (
            torch.zeros(rows.n_users, dtype=dt, device=dev),
            torch.zeros(rows.n_items, dtype=dt, device=dev),
        )
        self.bias_prior = {"user": [0.0, 1.0], "item": [0.0, 1.0]}  # mean, precision
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

    def sweep(self) -> None:
        rows = self.rows
        u, v = self.sides()
        self._draw_biases(u, v)
        base = rows.r - self.mu - self.bu[rows.u] - self.bi[rows.i]  # what the factors explain
        # the user side: p, then y, against the current V
        gram = rows.grams("user", v)
        self._draw_rows(self.p, "user", gram, base - rows.dots(u - self.p.values, v), v)
        if self.y is not None:
            target = base - rows.dots(self.p.values, v)
            self._draw_implicit(self.y, rows.a, rows.a_t, rows.a_t_sq, gram, target, v, "user")
        u, _ = self.sides()
        # the item side: q, then z, against the new U
        gram = rows.grams("item", u)
        self._draw_rows(self.q, "item", gram, base - rows.dots(u, v - self.q.values), u)
        if self.z is not None:
            target = base - rows.dots(u, self.q.values)
            self._draw_implicit(self.z, rows.b, rows.b_t, rows.b_t_sq, gram, target, u, "item")
        u, v = self.sides()
        resid = base - rows.dots(u, v)
        self.alpha = float(
            _gamma(
                torch.tensor(PRIOR_SHAPE + len(resid) / 2),
                torch.tensor(PRIOR_SHAPE + float(resid.square().sum()) / 2),
            )
        )
        for group in (self.p, self.q, self.y, self.z):
            if group is not None:
                group.draw_prior()

    def _draw_biases(self, u: Tensor, v: Tensor) -> None:
        rows = self.rows
        dots = rows.dots(u, v)
        for side in ("user", "item"):
            own, other = (self.bu, self.bi[rows.i]) if side == "user" else (self.bi, self.bu[rows.u])
            count = rows.user_count if side == "user" else rows.item_count
            resid = rows.r - self.mu - other - dots
            mean, prec = self.bias_prior[side]
            precision = self.alpha * count + prec
            centre = (
                self.alpha * torch.zeros_like(own).index_add_(0, rows.u if side == "user" else rows.i, resid)
                + prec * mean
            ) / precision
            own.copy_(centre + torch.randn_like(centre) / precision.sqrt())
            n = len(own)
            shape = PRIOR_SHAPE + (n + 1) / 2
            prec = float(
                _gamma(
                    torch.tensor(shape),
                    torch.tensor(PRIOR_SHAPE + float(((own - mean) ** 2).sum() + PRIOR_SHAPE * mean**2) / 2),
                )
            )
            mean = float(own.sum()) / (n + PRIOR_SHAPE) + float(torch.randn(())) / math.sqrt(
                (n + PRIOR_SHAPE) * prec
            )
            self.bias_prior[side] = [mean, prec]

    def _draw_rows(
        self, group: Group, side: Literal["user", "item"], gram: Tensor, target: Tensor, other: Tensor
    ) -> None:
        """Every row of `group` from its Normal conditional: precision alpha G + diag(lambda)."""
        rows = self.rows
        precision = self.alpha * gram + torch.diag_embed(group.precision.expand(len(gram), -1))
        rhs = self.alpha * rows.per_row_sum(side, target, other) + group.precision * group.mean
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
        other: Tensor, side: Literal["user", "item"],
    ) -> None:  # fmt: skip
        """Perturb-and-solve: the implicit rows minimising alpha |target + e - (A Y)_row . other|^2 +
        |Lambda^1/2 (Y - mean - d)|^2, e and d Normal noise, by conjugate gradients from the current
        draw, preconditioned by each row's own k x k block (alpha sum_u A_uj^2 C_u + Lambda)."""
        rows, alpha, lam = self.rows, self.alpha, group.precision
        noisy = target + torch.randn_like(target) / math.sqrt(alpha)
        rhs = alpha * (a_t @ rows.per_row_sum(side, noisy, other))
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
