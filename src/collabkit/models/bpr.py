"""BPR (Rendle et al. 2009): factors trained so that a user's rated items outrank unrated ones.

Each epoch draws, for every training pair (u, i) in a random order, one item j uniformly among the
items with training ratings, drawn again (up to `NEG_TRIES` times, vectorised) while u rated it,
and takes plain SGD steps on ln sigmoid(u.(i - j) + b_i - b_j) - reg (|u|^2 + |i|^2 + |j|^2 + b^2)
over batches of `bs` triples, as implicit does one triple at a time. The gradients are written out
by hand and applied with `index_add_` (a row drawn twice in a batch gets both steps), so there is
no autograd graph and no optimiser state; the penalty is applied as a decay of the drawn rows every
few thousand triples, and large epochs run in one thread per torch thread at once (hogwild), as
implicit's do (`_SGD`). With `min_rating`, only the ratings at or above it are pairs (the others'
items can then be drawn as j). The loop lives in `fit_direct`, so the family trains through `train`
like the closed-form ones; it shows a progress bar on stderr while it runs (when stderr is a
terminal) and, with `log` set, one line per epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from collabkit.models.base import ModelConfig, numeric_failure, register, require_finite
from collabkit.models.ranking_base import RankingModel, kept_ratings, min_rating_field
from collabkit.models.settings import MAX_BATCH, MAX_EPOCHS, MAX_FACTORS, FamilySettings

NEG_TRIES = 3  # draws of j per pair; after them a rated j is kept (about 6%^3 of pairs on ML-100k)
LANE_MIN = 2**15  # triples per epoch per parallel thread: n triples run in min(threads, n // LANE_MIN)
DECAY_EVERY = 2  # the penalty is applied every 2 x (users + items) triples (see _SGD)
DENSE_PAIRS = 2**27  # users x items up to which rated pairs are a bitmap (128 MB) rather than sorted keys


class BPRSettings(FamilySettings):
    n_factors: int = Field(64, ge=1, le=MAX_FACTORS, description="factors per user and item")
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="passes over the training pairs")
    lr: float = Field(0.05, gt=0, description="SGD's step size")
    reg: float = Field(0.01, ge=0, description="L2 penalty on the factors and biases of each drawn row")
    bs: int = Field(4096, ge=1, le=MAX_BATCH, description="triples per step")
    min_rating: float | None = min_rating_field()


@register("bpr")
class BPR(RankingModel):
    """Bayesian personalised ranking with item biases, by SGD on batches of triples.

    `--factors 64 --epochs 20 -o lr=0.05 -o reg=0.01 --bs 4096`: reg is implicit's 0.01; lr 0.05
    chosen on ML-100k u1 (bench/ranking.py: NDCG@10 0.391 at bs 1024, against 0.363 for the
    earlier Adam at lr 0.01); bs 4096 since the decayed penalty and the kept buffers (`_SGD`): about
    as accurate (u1..u3 mean 0.343 against 0.340 at 1024 with the penalty in each step) and about
    15% less CPU per triple than 1024 (per-step overhead); 16384 gained nothing measurable.
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
        x, y = kept_ratings(x.to(dev), y.to(dev), s.min_rating)
        k = s.n_factors
        ones = torch.ones(self.n_users, 1, device=dev)
        users = torch.cat([self.user_factors, ones], 1)  # (n_users, k + 1): a 1 meets b_i
        items = torch.cat([self.item_factors, self.item_bias[:, None]], 1)  # (n_items, k + 1)
        show = self.show_progress if self.show_progress is not None else sys.stderr.isatty()
        sgd = _SGD(users, items, _Triples(x, self.n_users, self.n_items), s.lr, s.reg, s.bs)
        with _Bar(show, s.epochs, self.name) as advance, sgd:
            for epoch in range(s.epochs):
                start = time.perf_counter()
                mean = sgd.epoch()
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
        self.user_factors.copy_(users[:, :k])
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
        BPR has no closed form, and this least-squares stand-in ranks as the trained rows do. With
        `min_rating`, only the ratings at or above it count, as in training."""
        self.check_fold_in(item_idx, ratings)
        if self.settings.min_rating is not None:
            item_idx = item_idx[ratings >= self.settings.min_rating]
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


class _Triples:
    """BPR's triples (u, i, j) from the training pairs: the pairs in a random order each epoch,
    j uniform among the items with training ratings and drawn again (up to `NEG_TRIES` times in
    all, vectorised) where u rated it."""

    def __init__(self, x: Tensor, n_users: int, n_items: int) -> None:
        self.users, self.items = x[:, 0].contiguous(), x[:, 1].contiguous()
        self.n_users, self.n_items = n_users, n_items
        self.rated = torch.unique(self.items)  # negatives are drawn among items with training ratings
        self.every_item = len(self.rated) == n_items  # then j needs no lookup in `rated`
        self.is_rated = _PairSet(self.users, self.items, n_users, n_items)

    def __len__(self) -> int:
        return len(self.users)

    def order(self) -> Tensor:
        """(n,) the pairs' positions in a random order: an epoch."""
        return torch.randperm(len(self), device=self.users.device)

    def take(self, at: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The triples of the pairs at positions `at`: (u, i, j), each (len(at),)."""
        u, i = torch.index_select(self.users, 0, at), torch.index_select(self.items, 0, at)
        return u, i, self.negatives(u)

    def negatives(self, u: Tensor) -> Tensor:
        """(N,) one item per user in `u`, uniform over `rated`, redrawn where the user rated it."""
        j = self.draw(len(u), u.device)
        again = torch.nonzero(self.is_rated(u, j)).squeeze(1)  # pairs whose j the user rated
        for _ in range(NEG_TRIES - 1):
            if len(again) == 0:
                break
            redrawn = self.draw(len(again), u.device)
            j[again] = redrawn
            again = again[self.is_rated(u[again], redrawn)]  # only the redrawn are looked up
        return j

    def draw(self, n: int, device: torch.device) -> Tensor:
        if self.every_item:
            return torch.randint(self.n_items, (n,), device=device)
        return torch.index_select(self.rated, 0, torch.randint(len(self.rated), (n,), device=device))


class _SGD:
    """Plain SGD on BPR's triples, in place on `users` (n_users, k + 1, ending in a 1) and `items`
    (n_items, k + 1, ending in the bias), so that x_uij = u . (i - j) over all k + 1 columns.

    Work per triple is what bounds the speed (bench/ranking_speed.py): 3 row gathers, 3 row adds
    (`index_add_`, the costliest, about 35 ns a row) and 5 passes over the gathered rows, into
    buffers kept from step to step (a fresh 1-4 MB tensor per step costs page faults). The penalty
    is not in the steps: reg's share of a step, -lr reg row for each time a row is drawn, is applied
    as a decay (1 - lr reg)^draws of every row after each `chunk` of triples, which saves two passes
    over the gathered rows per side (a decay after every step would cost a pass over the tables
    per step; one after 8 x (users + items) triples lost 0.01 NDCG@10 on ML-100k u1..u3, one after
    2 x none). `lanes` threads (one per torch thread, torch itself on one thread in each, and at
    least `LANE_MIN` triples an epoch each) run disjoint shares of the epoch at once, writing the
    tables without locks (hogwild, Recht et al. 2011, as implicit's BPR does); the cap keeps the
    triples in flight at once a small part of an epoch (2 threads on ML-100k u1, NDCG@10 as with 1).
    """

    def __init__(
        self, users: Tensor, items: Tensor, triples: _Triples, lr: float, reg: float, bs: int
    ) -> None:
        self.users, self.items, self.triples = users, items, triples
        self.lr, self.reg, self.bs = lr, reg, bs
        n = len(triples)
        self.threads = torch.get_num_threads()
        self.lanes = max(1, min(self.threads, n // LANE_MIN))
        self.chunk = max(bs, DECAY_EVERY * (len(users) + len(items)))
        width = min(bs, n)
        self.buffers = [  # per lane: the gathered user, i and j rows, and a product
            torch.empty(4, width, users.shape[1], device=users.device) for _ in range(self.lanes)
        ]
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _SGD:
        torch.set_num_threads(1)  # a step's ops on a few thousand rows: threads cost more to wake
        if self.lanes > 1:
            self.pool = ThreadPoolExecutor(self.lanes - 1, thread_name_prefix="bpr")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        torch.set_num_threads(self.threads)

    def epoch(self) -> float:
        """One pass over the training pairs, each in a triple; the mean loss -ln sigmoid(x_uij)."""
        order = self.triples.order()
        shares = order.tensor_split(self.lanes)
        pool = self.pool
        others = [pool.submit(self.lane, shares[w], w) for w in range(1, self.lanes)] if pool else []
        return (self.lane(shares[0], 0) + sum(f.result() for f in others)) / len(order)

    def lane(self, share: Tensor, lane: int) -> float:
        """Steps on the triples of the pairs at `share`, in batches of `bs` with `lane`'s buffers,
        each `chunk / lanes` of them followed by the decay of the rows they drew; their summed loss.
        Lanes never wait for each other within an epoch (a decay may meet another lane's step)."""
        loss = torch.zeros((), device=share.device)
        every = max(self.bs, self.chunk // self.lanes)
        all_u, all_i, all_j = self.triples.take(share)
        for start in range(0, len(share), every):
            stop = min(start + every, len(share))
            for at in range(start, stop, self.bs):
                to = min(at + self.bs, stop)
                loss += self.step(all_u[at:to], all_i[at:to], all_j[at:to], self.buffers[lane][:, : to - at])
            if self.reg > 0:
                user_draws = torch.bincount(all_u[start:stop], minlength=len(self.users))
                ij = torch.cat([all_i[start:stop], all_j[start:stop]])
                self.decay(user_draws, torch.bincount(ij, minlength=len(self.items)))
        return float(loss)

    def step(self, u: Tensor, i: Tensor, j: Tensor, buf: Tensor) -> Tensor:
        """One step of ln sigmoid(x_uij) over a batch, in place (a row drawn twice gets both steps);
        the batch's summed loss. `buf` (4, b, k + 1) is the lane's workspace."""
        users, items, lr = self.users, self.items, self.lr
        pu = torch.index_select(users, 0, u, out=buf[0])  # (b, k + 1)
        diff = torch.index_select(items, 0, i, out=buf[1])  # (b, k + 1): the i rows, then i - j
        qj = torch.index_select(items, 0, j, out=buf[2])
        diff.sub_(qj)
        xuij = torch.mul(pu, diff, out=buf[3]).sum(1)  # (b,)
        z = torch.sigmoid(-xuij).mul_(lr)[:, None]  # (b, 1) lr * d ln sigmoid(x) / dx
        diff[:, -1] = 0.0  # the user's 1 stays 1
        users.index_add_(0, u, diff.mul_(z))  # lr z (i - j)
        step = torch.mul(pu, z, out=qj)  # lr z (u, 1)
        items.index_add_(0, i, step)
        items.index_add_(0, j, step.neg_())
        return torch.nn.functional.softplus(-xuij).sum()  # -ln sigmoid(x)

    def decay(self, user_draws: Tensor, item_draws: Tensor) -> None:
        """The penalty's share of the steps: each row times (1 - lr reg)^(times it was drawn), the
        users' 1 column left out, the items' bias column in."""
        keep = 1.0 - self.lr * self.reg
        self.users[:, :-1].mul_(torch.pow(keep, user_draws)[:, None])
        self.items.mul_(torch.pow(keep, item_draws)[:, None])


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
