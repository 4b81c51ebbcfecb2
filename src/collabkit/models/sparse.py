"""Compressed sparse rows (CSR) for interaction matrices, and the few products the ranking families need.

A users x items table is mostly empty: ML-25M has 25 M ratings in 9.6 G cells. The ranking families
keep their training interactions in this form, never dense, and build dense rows only for a block of
users at a time (`dense_rows`), so memory grows with the ratings, not with users x items.

The arrays are plain tensors (indptr, indices, values); torch's own sparse CSR type is used only
inside `matmul`, where its kernel is the fast path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

GATHER_COST = 100  # a gathered co-occurrence costs about 100 multiply-adds of the sparse kernel (measured)
SPARSE_SHARE = 0.05  # below this share of non-zeros the sparse kernel beats a dense product (measured 1/17)


@dataclass(frozen=True)
class CSR:
    """An (n_rows, n_cols) sparse matrix: row r's columns are `indices[indptr[r]:indptr[r + 1]]`,
    its values at the same positions of `values` (float32)."""

    indptr: Tensor  # (n_rows + 1,) int64
    indices: Tensor  # (nnz,) int64
    values: Tensor  # (nnz,) float32
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_cols

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @classmethod
    def from_pairs(
        cls, rows: Tensor, cols: Tensor, values: Tensor, n_rows: int, n_cols: int, last_wins: bool = True
    ) -> CSR:
        """The matrix with `values` at (rows, cols). With `last_wins` a repeated cell keeps its last
        value (as a dense assignment would); otherwise every entry is kept, in the given order."""
        rows, cols, values = rows.long(), cols.long(), values.float()
        if last_wins and len(rows):
            _, keep = last_of_each(rows * n_cols + cols)  # sorted by (row, col)
        else:
            keep = torch.argsort(rows, stable=True)
        indptr = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
        indptr[1:] = torch.cumsum(torch.bincount(rows[keep], minlength=n_rows), 0)
        return cls(indptr, cols[keep].contiguous(), values[keep].contiguous(), n_cols)

    def to(self, device: torch.device | str) -> CSR:
        return CSR(self.indptr.to(device), self.indices.to(device), self.values.to(device), self.n_cols)

    def row_of_entries(self) -> Tensor:
        """(nnz,) the row of every stored entry."""
        counts = self.indptr[1:] - self.indptr[:-1]
        return torch.repeat_interleave(torch.arange(self.n_rows, device=self.indptr.device), counts)

    def transpose(self) -> CSR:
        """The (n_cols, n_rows) transpose, each row's entries in increasing column order."""
        return CSR.from_pairs(self.indices, self.row_of_entries(), self.values, self.n_cols, self.n_rows)

    def entries(self, row_idx: Tensor) -> tuple[Tensor, Tensor]:
        """(position in `row_idx`, position in `indices`/`values`) of every entry of the chosen rows."""
        row_idx = row_idx.to(self.indptr.device).long()
        starts = self.indptr[row_idx]
        lengths = self.indptr[row_idx + 1] - starts
        which = torch.repeat_interleave(torch.arange(len(row_idx), device=starts.device), lengths)
        offset = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
        return which, offset + torch.arange(len(offset), device=starts.device)

    def dense_rows(self, row_idx: Tensor) -> Tensor:
        """(len(row_idx), n_cols) float32: the chosen rows, dense (a block at a time, never all)."""
        which, pos = self.entries(row_idx)
        out = torch.zeros(len(row_idx), self.n_cols, device=self.values.device)
        out.index_put_((which, self.indices[pos]), self.values[pos], accumulate=True)
        return out

    def row_norms(self) -> Tensor:
        """(n_rows,) the Euclidean length of every row."""
        sq = torch.zeros(self.n_rows, dtype=torch.float64, device=self.values.device)
        sq.index_add_(0, self.row_of_entries(), self.values.double() ** 2)
        return sq.sqrt().float()

    def scale_rows(self, factor: Tensor) -> CSR:
        """The matrix with row r multiplied by factor[r]."""
        return CSR(self.indptr, self.indices, self.values * factor[self.row_of_entries()], self.n_cols)

    def keep_columns(self, col_pos: Tensor, n_cols: int) -> CSR:
        """The matrix on a subset of columns: column c moves to col_pos[c], or is dropped where -1."""
        new = col_pos.to(self.indices.device)[self.indices]
        keep = new >= 0
        rows = self.row_of_entries()[keep]
        return CSR.from_pairs(rows, new[keep], self.values[keep], self.n_rows, n_cols)

    def matmul(self, dense: Tensor) -> Tensor:
        """(n_rows, k) this matrix times a dense (n_cols, k) one, by torch's sparse kernel."""
        with warnings.catch_warnings():  # "sparse CSR support is in beta": a product is all we use
            warnings.simplefilter("ignore", UserWarning)
            m = torch.sparse_csr_tensor(self.indptr, self.indices, self.values, self.shape)
            return m @ dense.float()

    def weighted_rows(self, which: Tensor, rows: Tensor, weights: Tensor, n_out: int) -> Tensor:
        """(n_out, n_cols): out[which[e]] += weights[e] * row rows[e] of this matrix, for every e.

        The product of a sparse (n_out, n_rows) matrix given as entries (which, rows, weights) with
        this one, costing the entries' row lengths, not n_out x n_rows: how a user's neighbours'
        rows (user kNN) or their items' neighbour lists (item kNN) add up to scores.
        """
        entry, pos = self.entries(rows)  # entry e of (which, rows, weights) for each stored value
        out = torch.zeros(n_out, self.n_cols, device=self.values.device)
        out.index_put_(
            (which[entry], self.indices[pos]), weights.float()[entry] * self.values[pos], accumulate=True
        )
        return out

    def gram_rows(self, row_idx: Tensor, by_col: CSR) -> Tensor:
        """(len(row_idx), n_rows) rows of this matrix times its transpose (`by_col`, made once by
        the caller): row r's dot products with every row, summed over shared columns only, so the
        cost is the entries' column lengths (co-occurrences), not rows x columns."""
        which, pos = self.entries(row_idx)
        col_len = by_col.indptr[1:] - by_col.indptr[:-1]
        touched = int(col_len[self.indices[pos]].sum())
        if touched * GATHER_COST > self.nnz * len(row_idx):  # co-occurrences abound: one product
            return self.matmul(self.dense_rows(row_idx).T).T  # cheaper where co-occurrences abound
        return by_col.weighted_rows(which, self.indices[pos], self.values[pos], len(row_idx))

    def gram_work(self, by_col: CSR) -> Tensor:
        """(n_rows,) the entries `gram_rows` touches for each row: what sizes its blocks."""
        col_len = by_col.indptr[1:] - by_col.indptr[:-1]
        work = torch.zeros(self.n_rows, dtype=torch.long, device=self.indptr.device)
        work.index_add_(0, self.row_of_entries(), col_len[self.indices])
        return work


def last_of_each(key: Tensor) -> tuple[Tensor, Tensor]:
    """(distinct keys, sorted; the position of each one's last occurrence in `key`): a repeated
    (user, item) pair keeps its last rating, as a dense assignment would."""
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    is_last = torch.ones_like(sorted_key, dtype=torch.bool)
    is_last[:-1] = sorted_key[1:] != sorted_key[:-1]
    return sorted_key[is_last], order[is_last]


def dense_rows(table: Tensor | CSR | np.ndarray, row_idx: Tensor) -> Tensor:
    """Rows of a dense table (a tensor or an array) or a CSR matrix, dense float32."""
    if isinstance(table, CSR):
        return table.dense_rows(row_idx)
    if isinstance(table, np.ndarray):
        table = torch.from_numpy(table)
    return table[row_idx.to(table.device)].float()


def unit_rows(table: Tensor | CSR) -> Tensor | CSR:
    """The table with every row scaled to unit length (zero rows stay zero), dense or CSR as given."""
    if isinstance(table, CSR):
        return table.scale_rows(1.0 / table.row_norms().clamp_min(1e-12))
    t = table.detach().float()
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def times_vector(table: Tensor | CSR, vector: Tensor) -> Tensor:
    """(n_rows,) a dense table or a CSR matrix times a (n_cols,) vector."""
    if isinstance(table, CSR):
        return table.matmul(vector[:, None])[:, 0]
    return table @ vector


def n_cols(table: Tensor | CSR) -> int:
    return table.n_cols if isinstance(table, CSR) else int(table.shape[1])


def cosines(unit: Tensor | CSR | np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray) -> np.ndarray:
    """(len(a_idx), len(b_idx)) float32 dot products of rows of a unit-row table: their cosines."""
    a = dense_rows(unit, torch.as_tensor(a_idx, dtype=torch.long))
    b = dense_rows(unit, torch.as_tensor(b_idx, dtype=torch.long))
    return (a @ b.T).cpu().numpy()


def mostly_zero_times(rows: Tensor, dense: Tensor) -> Tensor:
    """(B, k) `rows` (B, n) times `dense` (n, k), through the sparse kernel where `rows` are mostly
    zeros (interaction rows: a user rates a few of the catalogue's items), so the cost is the
    non-zeros times k rather than B x n x k (7x faster at 150 of 20,000 items, measured)."""
    if rows.numel() and int(torch.count_nonzero(rows)) <= SPARSE_SHARE * rows.numel():
        with warnings.catch_warnings():  # "sparse CSR support is in beta": a product is all we use
            warnings.simplefilter("ignore", UserWarning)
            return rows.to_sparse_csr() @ dense
    return rows @ dense


def blocks(work: Tensor, budget: int, width: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) row ranges whose summed `work` stays within `budget` (a row over
    it alone makes a block of its own) and whose dense output (rows x `width`) stays within it too."""
    most_rows = max(1, budget // max(1, width))
    out, start, total = [], 0, 0
    for r, w in enumerate(work.tolist()):
        if r > start and (total + w > budget or r - start >= most_rows):
            out.append((start, r))
            start, total = r, 0
        total += w
    if start < len(work):
        out.append((start, len(work)))
    return out
