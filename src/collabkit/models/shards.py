"""Rows of one side split over the processes of a `torch.distributed` group (torchrun).

A family that solves its rows independently (ials: each user's, then each item's k x k system)
gives every process a contiguous share of the rows, and the shares are all-gathered into the whole
table after each half-sweep. Every process holds the whole other side, so each row's system is
exactly the one a single process solves: the factors match one process to float rounding. Gloo
(CPU) and NCCL (GPU) both take `all_gather` of equal shapes, so the last share is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Shards:
    """This process's place in the group: `rank` of `world` processes."""

    rank: int
    world: int

    def share(self, n: int) -> tuple[int, int]:
        """[lo, hi): this process's rows of `n`, contiguous, the last share the shortest."""
        size = -(-n // self.world)
        lo = min(n, self.rank * size)
        return lo, min(n, lo + size)

    def gather(self, part: Tensor, n: int) -> Tensor:
        """(n, k) every process's rows, from this one's share `part` (in rank order)."""
        size = -(-n // self.world)
        padded = torch.zeros(size, *part.shape[1:], dtype=part.dtype, device=part.device)
        padded[: len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat(parts)[:n]


def current_shards() -> Shards | None:
    """The group this process is in, or None when it runs alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Shards(dist.get_rank(), dist.get_world_size())
