"""The top-N engine: candidate items, the seen-items matrix, and the block loop with `topk`.

Scores for many users come from one matrix product per block of users against every candidate
item (the model's `user_rows`, `item_side` and `score_block`), the block sized so that its scores
fit in `score_budget` floats, followed by a chunked `torch.topk` (`row_topk`); there is no Python loop
over users or items.
What a user rated in training is masked from the model's compressed-row matrix (`TrainedModel.seen`),
built once per model and shared with interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collabkit.bundle import SeenItems
from collabkit.models import CollabModel
from collabkit.models.base import model_device
from collabkit.models.sparse import CSR, dense_rows, times_vector
from collabkit.train import args

# float32 scores per block (64 MiB). 16 MiB blocks rank 1.5x faster (they stay in a 32 MiB L3 cache),
# but glibc serves blocks under its 32 MiB mmap threshold from the heap and keeps them: top-10 for
# the 162,521 users of the ML-25M shape then grew the process to 16 GB. Blocks this size are mapped
# and returned; a score buffer reused across blocks would allow the smaller size.
DEFAULT_SCORE_BUDGET = 2**24
MAX_N = 10_000  # the longest list any request may ask for
MAX_SCORE_BUDGET = 2**34  # 64 GiB of float32 scores at once: beyond any machine this runs on


CHUNK = 64  # `row_topk`: scores per chunk whose maximum stands for the chunk


def row_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each row's k largest scores and their columns, best first, as `scores.topk(k, dim=1)`.

    Exact, and about 4x cheaper on wide rows: the k best chunks by their maximum hold k scores at
    least as large as any score outside them, so `topk` runs on those chunks only and the rest of
    the row is read once, by a max. Ties may come back in another order than `topk`'s.
    """
    b, m = scores.shape
    if k * CHUNK * 8 > m:  # narrow rows, or a long list: nothing to save
        return scores.topk(k, dim=1)
    whole = m // CHUNK * CHUNK
    maxima = scores[:, :whole].unflatten(1, (whole // CHUNK, CHUNK)).amax(2)  # (b, chunks), no copy
    if whole < m:  # the last, shorter chunk
        maxima = torch.cat([maxima, scores[:, whole:].amax(1, keepdim=True)], 1)
    best = maxima.topk(k, dim=1).indices  # (b, k) the chunks holding the k best scores
    cols = (best[:, :, None] * CHUNK + torch.arange(CHUNK, device=scores.device)).view(b, k * CHUNK)
    cols = cols.clamp_max_(m - 1)  # past the end: read once more, then never chosen
    picked = scores.gather(1, cols)
    picked[:, 1:][cols[:, 1:] == cols[:, :-1]] = float("-inf")  # a repeat of the last column
    top, at = picked.topk(k, dim=1)
    return top, cols.gather(1, at)


def check_n(n: Any) -> int:
    """`n` as a positive whole number no larger than MAX_N."""
    return args.whole("n", n, 1, MAX_N)


def cosine_neighbours(
    table: Tensor, query_idx: Sequence[int], n: int, candidates: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the n rows of `table` nearest the query rows, best first.

    Several query rows are combined as the mean of their normalised vectors; the query rows are
    never returned. `candidates` is an optional (N,) bool mask of rows allowed in the answer.
    """
    t = table.detach().float().cpu()
    return unit_neighbours(t / t.norm(dim=1, keepdim=True).clamp_min(1e-12), query_idx, n, candidates)


def unit_neighbours(
    unit: Tensor | CSR, query_idx: Sequence[int], n: int, candidates: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`cosine_neighbours` of a table whose rows are already unit length (normalised once per model),
    dense or sparse (a ranking family's interaction columns)."""
    q = torch.as_tensor(list(query_idx), dtype=torch.long)
    centre = dense_rows(unit, q).mean(0)
    centre = centre / centre.norm().clamp_min(1e-12)
    sims = times_vector(unit, centre)  # (N,)
    n_rows = unit.n_rows if isinstance(unit, CSR) else len(unit)
    allowed = torch.ones(n_rows, dtype=torch.bool) if candidates is None else candidates.cpu().clone()
    allowed[q] = False
    sims = sims.masked_fill(~allowed, float("-inf"))
    take = min(int(n), int(allowed.sum()))
    top, idx = sims.topk(take)
    return idx.numpy(), top.numpy()


class TopN:
    """Ranks candidate items for rows of users; built once per model, reused by every query."""

    def __init__(self, model: CollabModel, seen: SeenItems, n_items: int,
                 score_budget: int = DEFAULT_SCORE_BUDGET) -> None:  # fmt: skip
        self.model = model
        self.n_users, self.n_items = len(seen.indptr) - 1, n_items
        self.score_budget = args.whole("score_budget", score_budget, 1, MAX_SCORE_BUDGET)
        self.device = model_device(model)
        self.seen = seen  # each user's rated items (the bundle's CSR, not a copy)
        self._prepared: tuple[Tensor, Tensor, Tensor, Any] | None = None  # (mask, cols, col_of, side)

    def rank(
        self,
        rows: Tensor,
        n: int,
        candidates: Tensor,
        seen_users: Tensor | None = None,
        penalty: Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Top-n item indices (-1 padded), the model's scores and the ordering scores (NaN padded).

        Args:
            rows: (R, d) user rows as the model scores them.
            candidates: (n_items,) bool, the items that may be returned.
            seen_users: (R,) user indices whose training items are left out, or None.
            penalty: (n_items,) subtracted from each row's raw scores in units of that row's
                standard deviation before ranking (a popularity penalty).

        Returns:
            (idx, model, order): `model` holds the model's own ratings (or scores) of the items;
            `order` the scores that ordered them, sorted best first: the penalised raw scores
            through the model's `raw_to_rating` (monotone), or None without a penalty, where the
            model's own scores ordered the list.
        """
        n_rows = len(rows)
        take = min(int(n), int(candidates.sum()))  # clamp before allocating anything of size n
        out_idx = np.full((n_rows, take), -1, dtype=np.int64)
        out_sc = np.full((n_rows, take), np.nan, dtype=np.float32)
        out_order = None if penalty is None else out_sc.copy()
        if take == 0 or n_rows == 0:
            return out_idx, out_sc, out_order
        cols, col_of, side = self._prepare(candidates)
        block = self.block_rows(len(cols))
        for start in range(0, n_rows, block):
            sl = slice(start, min(start + block, n_rows))
            raw = self.model.score_block(rows[sl].to(self.device), side)  # (B, m)
            if seen_users is not None:
                r, c = self._seen_columns(seen_users[sl].cpu(), col_of)
                raw[r.to(self.device), c.to(self.device)] = float("-inf")
            if penalty is None:
                top, at = row_topk(raw, take)  # sorted, best first
            else:
                finite = torch.isfinite(raw)
                spread = torch.where(finite, raw, torch.nan).nan_to_num(0.0).std(dim=1, keepdim=True)
                ordered, at = row_topk(raw - spread * penalty.to(raw.device)[cols][None, :], take)
                top = raw.gather(1, at)
            valid = torch.isfinite(top)
            scores = self.model.raw_to_rating(top).float().masked_fill(~valid, float("nan"))
            out_idx[sl] = cols[at].masked_fill(~valid, -1).cpu().numpy()
            out_sc[sl] = scores.cpu().numpy()
            if out_order is not None:
                order = self.model.raw_to_rating(ordered).float().masked_fill(~valid, float("nan"))
                out_order[sl] = order.cpu().numpy()
        return out_idx, out_sc, out_order

    def block_rows(self, n_cols: int) -> int:
        """Users per scoring block so that one block's scores stay within `score_budget` floats."""
        return max(1, self.score_budget // max(1, n_cols * self.model.pair_width()))

    def _prepare(self, candidates: Tensor) -> tuple[Tensor, Tensor, Any]:
        """(candidate item indices, item -> column map, the model's item side), kept for reuse."""
        p = self._prepared
        if p is not None and torch.equal(p[0], candidates):
            return p[1], p[2], p[3]
        cols = torch.nonzero(candidates).squeeze(1).to(self.device)  # score candidates only
        col_of = torch.full((self.n_items,), -1, dtype=torch.long)
        col_of[cols.cpu()] = torch.arange(len(cols))
        side = self.model.item_side(cols)
        self._prepared = (candidates.clone(), cols, col_of, side)
        return cols, col_of, side

    def _seen_columns(self, users: Tensor, col_of: Tensor) -> tuple[Tensor, Tensor]:
        """(block row, candidate column) of every training rating of `users` that is a candidate."""
        rows, items = self.seen.pairs(users)
        cols = col_of[items]
        keep = cols >= 0
        return rows[keep], cols[keep]
