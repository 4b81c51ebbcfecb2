"""BPR (Rendle et al. 2009): factors trained so that a user's rated items outrank unrated ones.

Each epoch draws, for every training pair (u, i) in a random order, one item j uniformly among the
items with training ratings, drawn again (up to `NEG_TRIES` times, vectorised) while u rated it,
and takes plain SGD steps on ln sigmoid(u.(i - j) + b_i - b_j) - reg (|u|^2 + |i|^2 + |j|^2 + b^2)
over batches of `bs` triples, as implicit does one triple at a time. The gradients are written out
by hand and applied with `scatter_add_` (a row drawn twice in a batch gets both steps), so there is no
autograd graph and no optimiser state: each step is a few gathers and scatters over the batch, and
there is no Python loop over users or items. The loop lives in `fit_direct`, so the family trains
through `train` like the closed-form ones; it shows a progress bar on stderr while it runs (when
stderr is a terminal) and, with `log` set, one line per epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, numeric_failure, register, require_finite
from collabkit.models.ranking_base import RankingModel
from collabkit.models.settings import MAX_BATCH, MAX_EPOCHS, MAX_FACTORS, FamilySettings

NEG_TRIES = 3  # draws of j per pair; after them a rated j is kept (about 6%^3 of pairs on ML-100k)
DENSE_PAIRS = 2**27  # users x items up to which rated pairs are a bitmap (128 MB) rather than sorted keys


class BPRSettings(FamilySettings):
    n_factors: int = Field(64, ge=1, le=MAX_FACTORS, description="factors per user and item")
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="passes over the training pairs")
    lr: float = Field(0.05, gt=0, description="SGD's step size")
    reg: float = Field(0.01, ge=0, description="L2 penalty on the factors and biases in a step")
    bs: int = Field(1024, ge=1, le=MAX_BATCH, description="triples per step")


@register("bpr")
class BPR(RankingModel):
    """Bayesian personalised ranking with item biases, by SGD on batches of triples.

    `--factors 64 --epochs 20 -o lr=0.05 -o reg=0.01 --bs 1024`: reg is implicit's 0.01; lr 0.05
    and bs 1024 chosen on ML-100k u1 (bench/ranking.py: NDCG@10 0.391, against 0.363 for the
    earlier Adam at lr 0.01 and bs 1024); 1024 triples keep a step's rows in cache (4096: slower).
    """

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
        # one line per epoch goes to `log` when set (a caller's log, e.g. `collabkit train`'s); the
        # bar on stderr shows when `show_progress` is True, or is None and stderr is a terminal
        self.log: Callable[[str], None] | None = None
        self.show_progress: bool | None = None

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        self.check_fit_input(x, y)
        s = self.settings
        dev = self.item_factors.device
        x = x.to(dev)
        k = s.n_factors
        users = self.user_factors.clone()
        items = torch.cat(
            [self.item_factors, self.item_bias[:, None]], 1
        )  # (n_items, k + 1): b_i rides along
        x_users, x_items = x[:, 0].contiguous(), x[:, 1].contiguous()
        rated = torch.unique(x_items)  # negatives are drawn among items with training ratings
        is_rated = _PairSet(x[:, 0], x[:, 1], self.n_users, self.n_items)
        n, lr, reg, bs = len(x), s.lr, s.reg, s.bs
        show = self.show_progress if self.show_progress is not None else sys.stderr.isatty()
        with _Bar(show, s.epochs, self.name) as advance, _one_thread():
            for epoch in range(s.epochs):
                start = time.perf_counter()
                order = torch.randperm(n, device=dev)
                u, i = torch.index_select(x_users, 0, order), torch.index_select(x_items, 0, order)
                j = _negatives(u, rated, is_rated)
                loss = torch.zeros((), device=dev)
                for at in range(0, n, bs):
                    loss += _step(users, items, u[at : at + bs], i[at : at + bs], j[at : at + bs], lr, reg)
                mean = float(loss) / n
                advance(f"loss {mean:.4f}")
                if self.log is not None:
                    self.log(
                        f"{self.name} epoch {epoch + 1}/{s.epochs}: loss {mean:.4f} "
                        f"({time.perf_counter() - start:.2f} s)"
                    )
                if mean != mean:  # NaN: stop here, require_finite says which setting
                    break
        factors, bias = items[:, :k], items[:, k]
        require_finite(
            self.name, "training", {"user_factors": users, "item_factors": factors, "item_bias": bias},
            {"lr": s.lr, "reg": s.reg, "bs": s.bs}, "a smaller lr keeps the SGD steps from diverging",
        )  # fmt: skip
        self.user_factors.copy_(users)
        self.item_factors.copy_(factors)
        self.item_bias.copy_(bias)

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


class _PairSet:
    """Membership of (user, item) pairs: a bitmap where users x items is small, else sorted keys."""

    def __init__(self, users: Tensor, items: Tensor, n_users: int, n_items: int) -> None:
        self.n_items = n_items
        keys = users * n_items + items
        self.dense = n_users * n_items <= DENSE_PAIRS
        if self.dense:
            self.table = torch.zeros(n_users * n_items, dtype=torch.bool, device=users.device)
            self.table[keys] = True
        else:
            self.table = torch.unique(keys)  # sorted

    def __call__(self, users: Tensor, items: Tensor) -> Tensor:
        """(N,) bool: was (users[n], items[n]) rated."""
        keys = users * self.n_items + items
        if self.dense:
            return torch.index_select(self.table, 0, keys)  # index_select: faster than [] here
        pos = torch.searchsorted(self.table, keys).clamp_max(len(self.table) - 1)
        return torch.index_select(self.table, 0, pos) == keys


def _negatives(u: Tensor, rated: Tensor, is_rated: _PairSet) -> Tensor:
    """(N,) one item per user in `u`, uniform over `rated`, redrawn where the user rated it."""
    j = torch.index_select(rated, 0, torch.randint(len(rated), u.shape, device=u.device))
    for _ in range(NEG_TRIES - 1):
        again = torch.nonzero(is_rated(u, j)).squeeze(1)  # pairs whose j the user rated
        if len(again) == 0:
            break
        j[again] = torch.index_select(rated, 0, torch.randint(len(rated), again.shape, device=u.device))
    return j


def _step(users: Tensor, items: Tensor, u: Tensor, i: Tensor, j: Tensor, lr: float, reg: float) -> Tensor:
    """One SGD step of ln sigmoid(x_uij) - reg |params|^2 over a batch, in place; its summed loss.

    `items` (n_items, k + 1) ends in the bias, so x_uij = u . (i - j)[:k] + (i - j)[k] and one
    scatter updates the factors and biases of i and j. Rows are gathered with index_select, which
    copies whole rows (advanced indexing was 2-3x slower here).
    """
    b, k = len(u), users.shape[1]
    pu = torch.index_select(users, 0, u)  # (b, k)
    ij = torch.cat([i, j])
    qij = torch.index_select(items, 0, ij)  # (2b, k + 1): copies of the i rows, then the j rows
    diff = qij[:b, :k] - qij[b:, :k]  # (b, k), contiguous: the scatter below is faster so
    xuij = torch.linalg.vecdot(pu, diff).add_(qij[:b, k]).sub_(qij[b:, k])  # (b,)
    zl = torch.sigmoid(-xuij).mul_(lr)[:, None]  # (b, 1) lr * d ln sigmoid(x) / dx
    # the steps are built in place in the gathered copies (few passes over (b, k) rows), then
    # scattered: scatter_add_ over an expanded index is 2.5x faster than index_add_ on CPU here
    step_u = diff.mul_(zl).sub_(pu, alpha=lr * reg)  # lr (z (i - j) - reg u)
    users.scatter_add_(0, u[:, None].expand(b, k), step_u)
    step_ij = qij.mul_(-lr * reg)  # lr (+-z (u, 1) - reg row): i rows +, j rows -
    step_ij[:b, :k].addcmul_(pu, zl)
    step_ij[b:, :k].addcmul_(pu, zl, value=-1.0)
    step_ij[:b, k].add_(zl[:, 0])
    step_ij[b:, k].sub_(zl[:, 0])
    items.scatter_add_(0, ij[:, None].expand(2 * b, k + 1), step_ij)
    return torch.nn.functional.softplus(-xuij).sum()  # -ln sigmoid(x)


class _one_thread:
    """torch on one intra-op thread for the SGD loop, restored after.

    A step works on a batch of a few thousand rows: threads cost more to wake than they save (on a
    loaded 2-core machine, 2 threads made an ML-100k epoch 5-10x slower than 1); implicit runs its
    triples in parallel instead, which a batched step cannot.
    """

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)


class _Bar:
    """A transient progress bar on stderr, one tick per epoch (nothing when not shown)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self.bar: Any = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.enabled:
            return lambda note: None
        from rich.console import Console  # lazy: rich only when a bar is shown
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            "{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"), transient=True, console=Console(stderr=True),
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task(f"{self.label} epochs", total=self.total, note="")
        return lambda note: self.bar.update(task, advance=1, note=note)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
