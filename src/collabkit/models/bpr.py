"""BPR (Rendle et al. 2009): factors trained so that a user's rated items outrank unrated ones.

Each step takes a minibatch of training pairs (u, i) and one uniformly drawn item j per pair and
minimises -log sigmoid(u.(i - j) + b_i - b_j) plus an L2 penalty, with Adam. Sampling is one
tensor draw per epoch (no Python loop over users or items); a drawn j the user did rate is kept, as
in the original paper (on ML-100k, about 6% of draws). The loop lives in `fit_direct`, so the
family trains through `train` like the closed-form ones.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from collabkit.models.base import ModelConfig, numeric_failure, register, require_finite
from collabkit.models.ranking_base import RankingModel
from collabkit.models.settings import MAX_BATCH, MAX_EPOCHS, MAX_FACTORS, FamilySettings


class BPRSettings(FamilySettings):
    n_factors: int = Field(64, ge=1, le=MAX_FACTORS, description="factors per user and item")
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="passes over the training pairs")
    lr: float = Field(0.01, gt=0, description="Adam's learning rate")
    reg: float = Field(0.01, ge=0, description="L2 penalty on the factors in a step")
    bs: int = Field(1024, ge=1, le=MAX_BATCH, description="pairs per step")


@register("bpr")
class BPR(RankingModel):
    """Bayesian personalised ranking with item biases. `--factors 64 --epochs 20 --lr 0.01
    -o reg=0.01 --bs 1024`: reg chosen among 0.003, 0.01, 0.03 on a validation part of ML-100k
    u1's training rows (bench/ranking.py --tune); the rest are common settings, not tuned."""

    user_factors: Tensor  # (n_users, factors)
    item_factors: Tensor  # (n_items, factors)
    item_bias: Tensor  # (n_items,)

    settings: BPRSettings
    Settings = BPRSettings

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k = self.settings.n_factors
        self.register_buffer("user_factors", torch.randn(self.n_users, k) * 0.01)
        self.register_buffer("item_factors", torch.randn(self.n_items, k) * 0.01)
        self.register_buffer("item_bias", torch.zeros(self.n_items))

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        dev = self.item_factors.device
        x = x.to(dev)
        users = nn.Parameter(self.user_factors.clone())
        items = nn.Parameter(self.item_factors.clone())
        bias = nn.Parameter(self.item_bias.clone())
        opt = torch.optim.Adam([users, items, bias], lr=self.settings.lr)
        rated = torch.unique(x[:, 1])  # negatives are drawn among items with training ratings
        reg, bs = self.settings.reg, self.settings.bs
        with torch.enable_grad():
            for _ in range(self.settings.epochs):
                order = torch.randperm(len(x), device=dev)
                negs = rated[torch.randint(len(rated), (len(x),), device=dev)]  # (N,) one per pair
                for start in range(0, len(x), bs):
                    at = order[start : start + bs]
                    u, i, j = x[at, 0], x[at, 1], negs[at]
                    pu, qi, qj = users[u], items[i], items[j]  # (b, k) each
                    diff = (pu * (qi - qj)).sum(1) + bias[i] - bias[j]  # (b,)
                    penalty = reg * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum())
                    loss = -nn.functional.logsigmoid(diff).mean() + penalty / len(at)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        s = self.settings
        require_finite(
            self.name, "training", {"user_factors": users, "item_factors": items, "item_bias": bias},
            {"lr": s.lr, "reg": s.reg, "bs": s.bs}, "a smaller lr keeps Adam's steps from diverging",
        )  # fmt: skip
        self.user_factors.copy_(users.detach())
        self.item_factors.copy_(items.detach())
        self.item_bias.copy_(bias.detach())

    def user_vectors(self) -> Tensor:
        return self.user_factors

    def item_vectors(self) -> Tensor:
        return self.item_factors

    def item_biases(self) -> Tensor:
        return self.item_bias

    def user_rows(self, user_idx: Tensor) -> Tensor:
        vecs = self.user_factors[user_idx]
        return torch.cat([vecs, torch.ones(len(vecs), 1, device=vecs.device)], 1)  # (B, k + 1)

    def item_side(self, item_idx: Tensor) -> Tensor:
        return torch.cat([self.item_factors[item_idx], self.item_bias[item_idx, None]], 1).T  # (k + 1, m)

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(k + 1,) the new user's row: a ridge fit of u.i + b_i to 1 on the rated items and 0 on
        all others (the items fixed), pulled towards the average user `prior` with `strength`;
        BPR has no closed form, and this least-squares stand-in ranks as the trained rows do."""
        self.check_fold_in(item_idx, ratings)
        items = self.item_factors.double()  # (n_items, k)
        target = -self.item_bias.double()  # (n_items,): what u.i must add to b_i to reach 0
        target[item_idx.to(items.device)] += 1.0
        start = prior[:-1].double().to(items.device)
        lam = max(float(strength), 1e-3) * len(items) / max(len(item_idx), 1)
        gram = items.T @ items + lam * torch.eye(items.shape[1], dtype=items.dtype, device=items.device)
        try:
            u = start + torch.linalg.solve(gram, items.T @ (target - items @ start))
        except torch.linalg.LinAlgError:
            raise numeric_failure(
                self.name, "folding in the new user", {"strength": strength}, "give a strength above 0"
            ) from None
        return torch.cat([u.float(), torch.ones(1, device=u.device)])
