"""The deep embedding network: concatenated embeddings through linear/ReLU/batch-norm blocks.

For scoring, the first linear layer acts on [user embedding, item embedding], so it splits into a
user part and an item part: the item part is computed once per candidate set, and a block of
users costs one small product plus the rest of the network on (users x items) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel, ModelConfig, register
from collabkit.models.core import Embedding, SigmoidRange, get_emb_sz

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


@register("nn")
class EmbeddingNN(CollabModel):
    """fastai's `EmbeddingNN`: user and item embeddings, concatenated, through an MLP.

    `emb_szs` is [(n_users, width), (n_items, width)], as `get_emb_sz` returns.
    """

    default_fold_in_strength = 1.0  # chosen by bench/coldstart.py --model nn (NDCG@10 of new users)
    settings_used = ("emb_szs", "layers", "ps", "embed_p", "y_range")

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

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any, emb_szs: Any = None) -> dict[str, Any]:
        return {**settings, "emb_szs": get_emb_sz(dls, emb_szs)}

    @classmethod
    def from_config(cls, config: ModelConfig) -> EmbeddingNN:
        return cls(
            config.embedding_sizes(),
            config.layers,
            ps=config.ps,
            embed_p=config.embed_p,
            y_range=config.y_range,
        )

    def forward(self, x_cat: Tensor, x_cont: Tensor | None = None) -> Tensor:
        # x_cat: (B, 2) -> (B, out_sz)
        x = torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)
        return self.out_range(self.head(self.layers(self.emb_drop(x))))

    # -- the protocol --------------------------------------------------------------------------
    def user_vectors(self) -> Tensor:
        return self._emb(0).weight.detach()

    def item_vectors(self) -> Tensor:
        return self._emb(1).weight.detach()

    def item_side(self, item_idx: Tensor) -> Tensor:
        """(m, h) the items' share of the first layer, plus its bias."""
        first, _ = self._first_linear()
        width = self._emb(0).weight.shape[1]
        pre = self.item_vectors()[item_idx] @ first.weight.detach()[:, width:].T
        if first.bias is not None:
            pre = pre + first.bias.detach()
        return pre.float()

    def score_block(self, rows: Tensor, side: Tensor) -> Tensor:
        out = self._logits(rows, side)  # (B, m, out)
        b, m, o = out.shape
        return self._logits_to_raw(out.reshape(b * m, o)).reshape(b, m).float()

    def pair_width(self) -> int:
        first, rest = self._first_linear()
        return max([first.out_features] + [m.out_features for m in rest if isinstance(m, nn.Linear)])

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """Adam steps on a user embedding that starts at `prior`, network and items frozen, on the
        model's own loss plus `strength` times the squared distance from `prior`."""
        steps, lr = 50, 0.05
        with torch.inference_mode(False), torch.enable_grad():  # callers may be in inference mode
            side = self.item_side(item_idx.to(prior.device)).clone()
            y = ratings.to(prior.device).clone()
            start = prior.clone().reshape(1, -1)
            vec = start.clone().requires_grad_(True)
            opt = torch.optim.Adam([vec], lr=lr)
            for _ in range(steps):
                logits = self._logits(vec, side)[0]  # (m, out)
                loss = self._fold_in_loss(logits, y) + strength * ((vec - start) ** 2).sum()
                (grad,) = torch.autograd.grad(loss, [vec])  # the model's weights get no gradient
                vec.grad = grad
                opt.step()
        return vec.detach()[0]

    # -- internals shared with the classifier ----------------------------------------------------
    def _logits_to_raw(self, flat: Tensor) -> Tensor:
        return self.out_range(flat).reshape(-1)

    def _fold_in_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return ((self.out_range(logits).reshape(-1) - y) ** 2).mean()

    def _emb(self, i: int) -> nn.Embedding:
        emb = self.embeds[i]
        if not isinstance(emb, nn.Embedding):
            raise CollabkitError(f"embedding {i} is a {type(emb).__name__}, not an nn.Embedding")
        return emb

    def _first_linear(self) -> tuple[nn.Linear, list[nn.Module]]:
        seq: list[nn.Module] = [*self.layers, self.head]
        first = seq[0]
        if not isinstance(first, nn.Linear):
            raise CollabkitError(f"the network starts with {type(first).__name__}, not a linear layer")
        return first, seq[1:]

    def _logits(self, rows: Tensor, side: Tensor) -> Tensor:
        """(B, m, out) network outputs before the output range, from user rows and item shares."""
        first, rest = self._first_linear()
        width = self._emb(0).weight.shape[1]
        pre_user = rows @ first.weight[:, :width].T  # (B, h)
        x = (pre_user[:, None, :] + side[None, :, :]).reshape(-1, first.out_features)
        for layer in rest:
            x = layer(x)
        return x.reshape(len(rows), len(side), -1)
