"""The deep embedding network: concatenated embeddings through linear/ReLU/batch-norm blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from collabkit.models.core import Embedding, Module, SigmoidRange

YRange = tuple[float, float] | None


def mlp_blocks(sizes: Sequence[int], ps: Sequence[float] = ()) -> nn.Sequential:
    """Linear -> ReLU -> BatchNorm1d (-> Dropout) per hidden size, as fastai's TabularModel lays out."""
    blocks: list[nn.Module] = []
    ps = list(ps) + [0.0] * (len(sizes) - 1 - len(ps))
    for n_in, n_out, p in zip(sizes[:-1], sizes[1:], ps, strict=False):
        blocks += [nn.Linear(n_in, n_out, bias=False), nn.ReLU(inplace=True), nn.BatchNorm1d(n_out)]
        if p:
            blocks.append(nn.Dropout(p))
    return nn.Sequential(*blocks)


class EmbeddingNN(Module):
    """fastai's `EmbeddingNN`: user and item embeddings, concatenated, through an MLP.

    `emb_szs` is [(n_users, width), (n_items, width)], as `get_emb_sz` returns.
    """

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        layers: Sequence[int] = (100, 50),
        ps: Sequence[float] = (),
        embed_p: float = 0.0,
        y_range: YRange = None,
        out_sz: int = 1,
    ) -> None:
        self.embeds = nn.ModuleList([Embedding(n, w) for n, w in emb_szs])
        self.emb_drop = nn.Dropout(embed_p)
        n_emb = sum(w for _, w in emb_szs)
        self.layers = mlp_blocks([n_emb, *layers], ps)
        self.head = nn.Linear(([n_emb, *layers])[-1], out_sz)
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.out_range = nn.Identity() if y_range is None else SigmoidRange(*y_range)

    def forward(self, x_cat: Tensor, x_cont: Tensor | None = None) -> Tensor:
        # x_cat: (B, 2) -> (B, out_sz)
        x = torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)
        return self.out_range(self.head(self.layers(self.emb_drop(x))))
