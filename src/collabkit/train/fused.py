"""A fused training step for the dot models: the gradients written out, no autograd graph.

Why: at the chapter's batch size of 64, an autograd step spends nearly all its time on bookkeeping
(recording the graph, one dense gradient per table, an optimiser call per parameter), not on the
arithmetic. This step computes the same loss and gradients by hand on one flat table that holds
users and items (factors and bias side by side), and runs AdamW on it.

Two AdamW updates (`FusedDotTrainer`'s `update`; "auto" picks one per step):

- dense, like fastai: one fused kernel over the whole table every step, so every row gets its
  weight decay and its momentum every step. Its cost grows with the table.
- lazy: only the rows the batch uses are updated, each first brought up to date in closed form
  for the steps it sat out. A row's gradient is zero on those steps, so with eps left aside
  AdamW's steps on it are linear maps whose factors depend only on the schedule (learning rate,
  beta1, bias corrections); any run of them collapses into one update built from prefix products
  and suffix sums over the steps (`_Window` has the equations). Every row is brought up to date
  before anything reads the table (`sync()`, which the Learner calls before each validation and
  checkpoint) and every `MAX_WINDOW` steps. Its cost does not grow with the table.

  eps: the dense step divides by sqrt(v_hat_j) + eps on each sat-out step j; the catch-up divides
  by sqrt(v_hat) + eps_bar, eps_bar the momentum-weighted mean of those steps' eps terms, which is
  exact to first order in eps / sqrt(v_hat). With eps -> 0 lazy and dense agree to float rounding
  (tests/test_fused.py). On the chapter's run (ML-100k random 20%, seed 42, bs 64, 5 epochs,
  lr 5e-3, wd 0.1, 6,250 steps) the lazy update ends with weights at most 1e-2 from the dense
  update's (largest over 5 seeds) and the same validation MSE to 3 decimals (0.813, median of 5
  seeds; `bench/speed.py --seeds 5 --jobs bias-fused-dense,bias-fused-lazy`). With eps simply
  taken as 0 in the catch-up the weights ended up to 0.33 apart. For scale: autograd and the dense
  fused step, which differ only in rounding, end 5e-6 apart.

  An earlier lazy update that simply skipped untouched rows (no decay, no momentum while a row sits
  out) left the chapter's model at validation MSE 0.94 instead of 0.81: with sparse rows, Adam's
  momentum carries each gradient over many later steps. The catch-up keeps that momentum.

Processes of a distributed run all-reduce one dense gradient table and take the dense update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from collabkit.models import CollabModel, DotTables
from collabkit.train.optim import adamw_update

Update = Literal["auto", "lazy", "dense"]
UPDATES = ("auto", "lazy", "dense")
ROWS_PER_USE = 64  # "auto" goes lazy where the table has this many rows per row a batch uses
MAX_WINDOW = 128  # steps between full catch-ups of every row (its factor table has 129^2 rows)
_SMALLEST = 1e-150  # no prefix product (or its inverse) in a window leaves float64's range
_NEGLIGIBLE = 1e-20  # a catch-up factor this small is 0: what it scales no longer counts


def dot_tables(model: nn.Module) -> DotTables | None:
    """The tables of a model the fused step can train (a plain dot model), else None."""
    return model.dot_tables() if isinstance(model, CollabModel) else None


def supports_fused(model: nn.Module) -> bool:
    """Whether `model` is a plain dot model that the fused step can train."""
    return dot_tables(model) is not None


class _Window:
    """The factors that bring a row, last updated after step a, up to date after step b.

    Covers the steps from `start` (a count of steps done, at which every row was up to date) to
    `start + n`. A row whose gradient is zero in step j (0-based schedule index, bias-correction
    count n_j) gets, with eps set aside for now (below):

        m <- beta1_j m,   v <- beta2 v,   p <- d_j p - c_j m / sqrt(v)
        d_j = 1 - lr_j wd,   c_j = lr_j sqrt(1 - beta2^n_j) / (1 - beta1_j^n_j)

    so q = m / sqrt(v) only scales: q <- r_j q with r_j = beta1_j / sqrt(beta2). With the prefix
    products D[s] = prod_{j<s} d_j, R[s] = prod r_j, B[s] = prod beta1_j, T[s] = beta2^s (indices
    relative to `start`) and the suffix sum H[s] = sum_{j>=s} t_j of t_j = c_j R[j+1] / D[j+1], the
    steps a..b-1 give

        p_b = alpha p_a - beta m_a / sqrt(v_a),   m_b = (B[b]/B[a]) m_a,   v_b = (T[b]/T[a]) v_a
        alpha = D[b]/D[a],   beta = (H[a] - H[b]) D[b] / R[a]

    H is summed from the end because t_j shrinks about geometrically: H[a] - H[b] >= t_a is then a
    sizeable part of H[a], where a prefix sum would subtract two nearly equal numbers.

    eps: step j really divides by sqrt(v_j / bc2_j) + eps, i.e. (on q's scale) by
    sqrt(v_a) + delta_j with delta_j = eps sqrt(bc2_j) beta2^-(j+1-a)/2. The catch-up divides by
    sqrt(v_a) + eps_bar, eps_bar the mean of delta_j weighted by each step's share of beta:

        eps_bar = beta2^(a/2) (E[a] - E[b]) / (H[a] - H[b]),   E[s] = sum_{j>=s} t_j e_j,
        e_j = eps sqrt(bc2_j) beta2^-(j+1)/2

    which is exact to first order in delta / sqrt(v_a); delta_j grows only by beta2^-1/2 a step
    while beta1's decay ends a row's momentum within tens of steps. eps_bar > 0 also keeps 0 / 0
    away from a row that has had no gradient (m = v = 0).

    The sums and products are taken in float64; `table[b, a]` holds [alpha, B[b]/B[a], T[b]/T[a],
    beta, eps_bar] in float32 for every a <= b, so a row's factors are one gather. A window keeps
    `n` small (the table has (n + 1)^2 rows) and every product inside float64's range.
    """

    def __init__(
        self,
        start: int,
        lrs: Sequence[float],
        moms: Sequence[float],
        wd: float,
        beta2: float,
        eps: float,
        first_count: int,
        device: torch.device,
    ) -> None:
        f64 = torch.float64
        lr, beta1 = torch.tensor(lrs, dtype=f64), torch.tensor(moms, dtype=f64)
        count = torch.arange(first_count, first_count + len(lr), dtype=f64)
        one = torch.ones(1, dtype=f64)
        c = lr * torch.sqrt(1 - beta2**count) / (1 - beta1**count)
        big_d = torch.cat([one, torch.cumprod(1 - lr * wd, 0)])
        big_r = torch.cat([one, torch.cumprod(beta1 / math.sqrt(beta2), 0)])
        big_b = torch.cat([one, torch.cumprod(beta1, 0)])
        big_t = beta2 ** torch.arange(len(lr) + 1, dtype=f64)
        t = c * big_r[1:] / big_d[1:]
        # eps of step j, moved to sqrt(v_a)'s scale: eps sqrt(bc2_j) beta2^-(j+1-a)/2 = e_j beta2^(a/2)
        e = eps * torch.sqrt(1 - beta2**count) * big_t[1:] ** -0.5
        h, h_eps = (torch.cat([x.flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=f64)]) for x in (t, t * e))
        now, then = (slice(None), None), (None, slice(None))  # b down the rows, a across
        alpha = big_d[now] / big_d[then]
        gap = h[then] - h[now]  # (n + 1, n + 1)
        beta = gap * (big_d[now] / big_r[then])
        eps_bar = (h_eps[then] - h_eps[now]) / gap.clamp_min(1e-300) * big_t[then].sqrt()
        table = torch.stack([alpha, big_b[now] / big_b[then], big_t[now] / big_t[then], beta], 2)
        steps = torch.arange(len(lr) + 1)
        table.masked_fill_((steps[then] > steps[now]).unsqueeze(2), 0.0)  # a > b: never asked for
        table.masked_fill_(table.abs() < _NEGLIGIBLE, 0.0)  # no subnormal floats (slow) from these
        eps_bar = torch.where(gap > 0, eps_bar, eps).clamp_min_(1e-30)  # > 0: 0 / 0 is never asked
        self.start, self.n = start, len(lr)
        self.table = torch.cat([table, eps_bar.unsqueeze(2)], 2).float().to(device)  # (n + 1, n + 1, 5)


def window_length(
    lrs: Sequence[float], moms: Sequence[float], wd: float, beta2: float, most: int = MAX_WINDOW
) -> int:
    """Steps per catch-up window (0: the lazy update does not apply to this schedule).

    The window keeps every prefix product of the per-step factors (1 - lr wd, beta1, beta2) and its
    inverse inside float64's range; a factor of 0 or less (beta1 = 0, lr wd >= 1) has no inverse.
    """
    smallest = min([beta2, *moms, *(1 - lr * wd for lr in lrs)], default=1.0)
    if smallest <= 0 or not 0 < beta2 < 1:
        return 0
    if smallest >= 1:
        return most
    return max(1, min(most, int(math.log(_SMALLEST) / math.log(smallest))))


class FusedDotTrainer:
    """Owns a dot model's tables while training; `sync()` writes them back into the model.

    Layout: one table `w` of users then items. With biases, a user row is [factors, b_u, 1] and an
    item row [factors, 1, b_i], so one dot product of the two rows is u.i + b_u + b_i: the biases
    cost no operations of their own. The constant columns get gradients like any other (the
    other side's bias) and are set to 1 before a row is read; AdamW works column by column, so the
    real parameters never see them. The lazy update keeps each row's weights and moments side by
    side (`state`, (3, rows, C)): a step gathers and writes back one block.

    `update` is "lazy" (the rows a batch uses, brought up to date in closed form), "dense" (every
    row every step, as fastai) or "auto": lazy on a step whose batch uses (2 rows a rating) at most
    1/`ROWS_PER_USE` of the table's rows, else dense. None takes `default_update`. A lazy step has
    more small operations than a dense one, but costs nothing for a row it leaves alone; a dense
    step sweeps the table. On one CPU core at bs 64 (`bench/scale.py --step-us`) they cost the same
    at 4,700 rows (330 us), lazy is 2.8x faster at 23,000 rows and 6.9x at 71,000; the chapter's
    ML-100k (2,600 rows) fits 1.2x faster dense. At bs 65536 the lazy step's work per rating
    (a gathered block of weights and moments per use of a row) outweighs the sweep: 3x slower
    and twice the memory at the 5M shape (`bench/scale.py --sizes 5e6 --updates dense,lazy`). The
    Learner builds the trainer without naming the update, so `FusedDotTrainer.default_update` is
    how a run through it asks for one.
    """

    default_update: ClassVar[Update] = "auto"

    def __init__(
        self,
        model: nn.Module,
        lrs: Sequence[float],
        moms: Sequence[float],
        wd: float,
        eps: float = 1e-5,
        sqr_mom: float = 0.99,
        update: Update | None = None,
        window: int = MAX_WINDOW,
    ) -> None:
        tables = dot_tables(model)
        if tables is None:
            raise TypeError(f"{type(model).__name__} is not a plain dot model; train it by autograd")
        update = self.default_update if update is None else update
        if update not in UPDATES:
            raise ValueError(f"unknown update {update!r}; expected one of: {', '.join(UPDATES)}")
        self.tables = tables
        self.has_bias = tables.user_bias is not None and tables.item_bias is not None
        users, items = tables.users.detach(), tables.items.detach()
        self.n_users, self.k = users.shape
        n_items, k = len(items), self.k
        n, width, dev = self.n_users + n_items, k + (2 if self.has_bias else 0), users.device
        self.state = torch.zeros(3, n, width, device=dev)  # weights, first and second moments
        self.w, self.m, self.v = self.state.unbind(0)  # (n, C) each
        self.w[: self.n_users, :k] = users
        self.w[self.n_users :, :k] = items
        if tables.user_bias is not None and tables.item_bias is not None:
            self.w[: self.n_users, k] = tables.user_bias.detach()[:, 0]
            self.w[self.n_users :, k + 1] = tables.item_bias.detach()[:, 0]
        self._reset_constants()
        self.grad = torch.zeros_like(self.w)
        self.steps = torch.zeros((), dtype=torch.float32, device=dev)
        self.offset = torch.tensor([0, self.n_users], device=dev)  # item rows follow user rows
        self.lrs = [float(x) for x in lrs]
        self.moms = [float(x) for x in moms]
        self.wd, self.eps, self.sqr_mom = wd, eps, sqr_mom
        self._t = 0
        self.y_range = tables.y_range
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if self.world > 1:  # start every process from the same weights, as DDP does
            dist.broadcast(self.w, src=0)
        self.window = window_length(self.lrs, self.moms, wd, sqr_mom, window)
        self.update: Update = update if self.world == 1 and self.window > 0 else "dense"
        self.last = torch.zeros(n, dtype=torch.long, device=dev)  # lazy: steps done at a row's update
        self._win: _Window | None = None
        self._buffers: dict[bool, Tensor] = {}  # the step's batch-sized work space, kept between steps

    def _batch_rows(self, n_rows: int, products: bool = False) -> Tensor:
        """(n_rows, C) work space for a step's gathered rows (or their products), made once and
        reused: a fresh 26 MB block a step at bs 65536 is what grows the process's resident memory
        (glibc keeps the freed blocks), 1.1 GB over one epoch of 5M ratings."""
        buf = self._buffers.get(products)
        if buf is None or len(buf) < n_rows:
            buf = self._buffers[products] = torch.empty(n_rows, self.w.shape[1], device=self.w.device)
        return buf[:n_rows]

    def uses_lazy(self, batch_size: int) -> bool:
        """Whether a step on a batch of `batch_size` ratings takes the lazy update."""
        if self.update == "auto":
            return len(self.w) >= ROWS_PER_USE * 2 * batch_size
        return self.update == "lazy"

    @property
    def t(self) -> int:
        """Steps of the schedule done (the next step's index)."""
        return self._t

    @t.setter
    def t(self, value: int) -> None:
        # the Learner sets it on resuming a schedule part-way: every row counts as up to date then
        self.catch_up()
        self._t = value

    def _reset_constants(self) -> None:
        if self.has_bias:
            self.w[: self.n_users, self.k + 1].fill_(1.0)
            self.w[self.n_users :, self.k].fill_(1.0)

    def step(self, x: Tensor, y: Tensor, step: int | None = None) -> Tensor:
        """One AdamW step on the batch (x: (B, 2) indices, y: (B,) ratings).

        Returns the batch's summed squared error. The schedule's own counter gives the step's
        hyperparameters; `step` is accepted for the Learner's step signature and ignored.
        """
        if self._t >= len(self.lrs):
            raise RuntimeError("the fused trainer ran past the end of its schedule")
        b = len(y)
        pairs = x + self.offset  # (B, 2): each rating's user row and item row
        idx = pairs.view(-1)  # (2B,) user row, item row, user row, ...
        lazy = self.uses_lazy(b)
        if lazy:
            win = self._window()
            block = self._rows_up_to_date(idx, win)  # (3, 2B, C): a row once per use of it
            r = block[0].view(b, 2, -1)  # (B, 2, C)
        else:
            self.catch_up()  # where "auto" went lazy on earlier steps
            r = torch.index_select(self.w, 0, idx, out=self._batch_rows(2 * b)).view(b, 2, -1)
        s = torch.mul(r[:, 0], r[:, 1], out=self._batch_rows(b, products=True)).sum(1)  # u.i + b_u + b_i
        if self.y_range is None:
            err = s.sub_(y)
            g, scale = err, 2.0 / b  # dloss/ds = scale * g
        else:
            lo, hi = self.y_range
            sig = s.sigmoid_()
            err = sig.mul(hi - lo).sub_(y).add_(lo)
            g = torch.addcmul(sig, sig, sig, value=-1.0).mul_(err)  # sig (1 - sig) err
            scale = 2.0 * (hi - lo) / b
        # Each row's gradient is the other row of its pair times g: scale the rows and add each to
        # its partner's row (pairs swapped in the index, not the floats).
        partner = pairs.flip(1).reshape(-1)
        if lazy:
            self._lazy_adamw(block, idx, partner, r.mul(g.view(b, 1, 1)).view(2 * b, -1), scale, win)
            self._t += 1
            return torch.dot(err, err)
        src = r.mul_(g.view(b, 1, 1)).view(2 * b, -1)
        grad = self.grad.zero_()  # (the lazy steps leave it zero too)
        if b >= 4096:  # scatter_add_ on an expanded index takes torch's sorted, parallel path: 2x faster
            grad.scatter_add_(0, partner.unsqueeze(1).expand_as(src), src.mul_(scale))
        else:  # on small batches index_add_ has less set-up; repeated rows add up in either branch
            grad.index_add_(0, partner, src, alpha=scale)
        if self.world > 1:  # the mean gradient over every process's batch, as DDP gives
            dist.all_reduce(grad)
            grad /= self.world
        adamw_update(
            [self.w], [grad], [self.m], [self.v], [self.steps],
            lr=self.lrs[self._t], beta1=self.moms[self._t], beta2=self.sqr_mom, weight_decay=self.wd,
            eps=self.eps,
        )  # fmt: skip
        self._reset_constants()
        self._t += 1
        return torch.dot(err, err)

    def _lazy_adamw(
        self, block: Tensor, idx: Tensor, partner: Tensor, src: Tensor, scale: float, win: _Window
    ) -> None:
        """AdamW on the gathered rows `block` (3, R, C) of table rows `idx` (R,), then store them.

        `src` (R, C) is what each use of a row adds to its partner's gradient, before `scale`; every
        use of a row gets the row's summed gradient.
        """
        if len(idx) >= 8192:  # scatter_add_ on an expanded index takes torch's sorted, parallel path
            self.grad.scatter_add_(0, partner.unsqueeze(1).expand_as(src), src.mul_(scale))
        else:
            self.grad.index_add_(0, partner, src, alpha=scale)
        grad = self.grad.index_select(0, idx)  # (R, C)
        self.grad.index_fill_(0, idx, 0.0)  # the table's gradient is zero between steps
        p, m, v = block.unbind(0)
        adamw_update(
            [p], [grad], [m], [v], [self.steps], lr=self.lrs[self._t], beta1=self.moms[self._t],
            beta2=self.sqr_mom, weight_decay=self.wd, eps=self.eps,
        )  # fmt: skip
        self.state.index_copy_(1, idx, block)
        self.last.index_fill_(0, idx, self._t + 1 - win.start)

    def _window(self) -> _Window:
        """The catch-up window holding step `t`, starting a new one (every row up to date) as needed."""
        win = self._win
        if win is None or self._t >= win.start + win.n:
            self.catch_up()
            start, end = self._t, min(self._t + self.window, len(self.lrs))
            win = self._win = _Window(
                start, self.lrs[start:end], self.moms[start:end], self.wd, self.sqr_mom, self.eps,
                int(self.steps) + 1, self.w.device,
            )  # fmt: skip
            self.last.zero_()  # steps done since the window's start
        return win

    def _rows_up_to_date(self, idx: Tensor, win: _Window) -> Tensor:
        """Rows `idx` (R,) of `state` brought up to step `t`, their constant columns 1: (3, R, C).

        A row used twice comes twice; both copies get the same arithmetic, so writing both back
        stores one value.
        """
        f = win.table[self._t - win.start].index_select(0, self.last.index_select(0, idx))  # (R, 5)
        block = self.state.index_select(1, idx)
        _advance(block, f)
        if self.has_bias:
            pairs = block[0].view(-1, 2, block.shape[2])  # a user row then an item row
            pairs[:, 0, self.k + 1] = 1.0
            pairs[:, 1, self.k] = 1.0
        return block

    @torch.no_grad()
    def catch_up(self) -> None:
        """Bring every row of the lazy update up to date (the dense one always is)."""
        win = self._win
        if win is None:
            return
        _advance(self.state, win.table[self._t - win.start].index_select(0, self.last))
        self._reset_constants()
        self._win = None  # the next step starts a window from here

    @torch.no_grad()
    def sync(self) -> None:
        """Bring every row up to date and copy the trained table into the model's parameters."""
        self.catch_up()
        t, k = self.tables, self.k
        t.users.detach().copy_(self.w[: self.n_users, :k])
        t.items.detach().copy_(self.w[self.n_users :, :k])
        if t.user_bias is not None and t.item_bias is not None:
            t.user_bias.detach()[:, 0] = self.w[: self.n_users, k]
            t.item_bias.detach()[:, 0] = self.w[self.n_users :, k + 1]


def _advance(block: Tensor, f: Tensor) -> None:
    """Apply catch-up factors f (R, 5) = [alpha, m factor, v factor, beta, eps] to a block (3, R, C)."""
    p, m, v = block.unbind(0)
    step = m.mul(f[:, 3:4])  # beta m / (sqrt(v) + eps); eps > 0, as v is 0 where m is
    denom = v.sqrt().add_(f[:, 4:5])
    block.mul_(f[:, :3].t().unsqueeze(2))
    p.addcdiv_(step, denom, value=-1.0)
