"""The deep embedding network: concatenated embeddings through linear/ReLU/batch-norm blocks.

For scoring, the first linear layer acts on [user embedding, item embedding], so it splits into a
user part and an item part: the item part is computed once per candidate set, and a block of
users costs one small product plus the rest of the network on (users x items) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel, ModelConfig, register
from collabkit.models.core import Embedding, SigmoidRange, emb_sz_rule, get_emb_sz
from collabkit.models.settings import CHAPTER, MAX_FACTORS, FamilySettings, Recipe, check_y_range

YRange = tuple[float, float] | None


class NetSettings(FamilySettings):
    """What the deep networks share: embedding widths, hidden sizes, dropout."""

    emb_szs: list[tuple[int, int]] | None = Field(
        None, description="(count, width) of the user and item embeddings; from fastai's rule"
    )
    layers: list[int] = Field([100, 50], min_length=1, description="hidden sizes")
    ps: list[float] = Field([], description="dropout after each hidden layer")
    embed_p: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the embeddings")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int]) -> list[int]:
        if any(n < 1 or n > MAX_FACTORS for n in v):
            raise ValueError(f"hidden sizes must be 1 to {MAX_FACTORS:,}, got {v}")
        return v

    @field_validator("ps")
    @classmethod
    def _ps(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= p < 1.0 for p in v):
            raise ValueError(f"dropout shares must be in [0, 1), got {v}")
        return v

    @field_validator("emb_szs")
    @classmethod
    def _emb(cls, v: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
        if v is not None and (len(v) != 2 or any(n < 1 or not 1 <= w <= MAX_FACTORS for n, w in v)):
            raise ValueError(f"emb_szs must be two (count, width) pairs, width 1 to {MAX_FACTORS:,}; got {v}")
        return v

    def embedding_sizes(self, n_users: int, n_items: int) -> list[tuple[int, int]]:
        return self.emb_szs or [(n_users, emb_sz_rule(n_users)), (n_items, emb_sz_rule(n_items))]


class NNSettings(NetSettings):
    """The deep network's settings, with its output range."""

    y_range: tuple[float, float] | None = Field(
        None, description="output range (low, high); the command sets it from the data"
    )

    _y = field_validator("y_range")(check_y_range)


# The deep models overfit in their last epoch (valid 0.859 then 0.893): keep the best one.
NN_RECIPES = {"fast": Recipe(bs=512, epochs=5, lr=5e-3, wd=0.1, keep_best=True), "chapter": CHAPTER}


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

    `emb_szs` is [(n_users, width), (n_items, width)], as `get_emb_sz` returns; `extra_inputs`
    widens the first layer for inputs a subclass adds (`user_inputs`, `item_inputs`).
    """

    default_fold_in_strength = 1.0  # chosen by bench/coldstart.py --model nn (NDCG@10 of new users)
    Settings: ClassVar[type[FamilySettings]] = NNSettings
    recipes = NN_RECIPES

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        layers: Sequence[int] = (100, 50),
        ps: Sequence[float] = (),
        embed_p: float = 0.0,
        y_range: YRange = None,
        out_sz: int = 1,
        extra_inputs: int = 0,
    ) -> None:
        self.embeds = nn.ModuleList([Embedding(n, w) for n, w in emb_szs])
        self.emb_drop = nn.Dropout(embed_p)
        n_emb = sum(w for _, w in emb_szs) + extra_inputs  # a hybrid's side columns widen the input
        self.layers = mlp_blocks([n_emb, *layers], ps)
        self.head = nn.Linear(([n_emb, *layers])[-1], out_sz)
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.out_range = nn.Identity() if y_range is None else SigmoidRange(*y_range)

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        sizes = settings.get("emb_szs")
        if sizes is None or isinstance(sizes, dict):  # fastai's rule, or widths by column name
            sizes = get_emb_sz(dls, sizes)
        return {**settings, "emb_szs": sizes}

    @classmethod
    def from_config(cls, config: ModelConfig) -> EmbeddingNN:
        s = cast(NNSettings, config.settings)  # ModelConfig checked it against NNSettings
        return cls(
            s.embedding_sizes(config.n_users, config.n_items),
            s.layers,
            ps=s.ps,
            embed_p=s.embed_p,
            y_range=s.y_range,
        )

    def forward(self, x_cat: Tensor, x_cont: Tensor | None = None) -> Tensor:
        # x_cat: (B, 2) -> (B, out_sz)
        x = torch.cat([self.user_inputs(x_cat[:, 0]), self.item_inputs(x_cat[:, 1])], dim=1)
        return self.out_range(self.head(self.layers(self.emb_drop(x))))

    # -- what the network reads of a user and an item (a hybrid adds their side columns) ----------
    def user_inputs(self, user_idx: Tensor) -> Tensor:
        """(B, d_user) the network's input for users: their embeddings."""
        return self._emb(0)(user_idx)

    def item_inputs(self, item_idx: Tensor) -> Tensor:
        """(m, d_item) the network's input for items: their embeddings."""
        return self._emb(1)(item_idx)

    # -- the protocol --------------------------------------------------------------------------
    def user_vectors(self) -> Tensor:
        return self._emb(0).weight.detach()

    def item_vectors(self) -> Tensor:
        return self._emb(1).weight.detach()

    @torch.no_grad()
    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.user_inputs(user_idx.to(self._emb(0).weight.device))

    def item_side(self, item_idx: Tensor) -> Tensor:
        """(m, h) the items' share of the first layer, plus its bias."""
        first, _ = self._first_linear()
        width = self._user_width()
        with torch.no_grad():  # no graph: fold-in may call this under enable_grad with inference indices
            pre = self.item_inputs(item_idx.to(first.weight.device)) @ first.weight[:, width:].T
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

    def _user_width(self) -> int:
        """Width of a user's input (the first layer's user columns come first)."""
        return int(self._emb(0).weight.shape[1])

    def _first_linear(self) -> tuple[nn.Linear, list[nn.Module]]:
        seq: list[nn.Module] = [*self.layers, self.head]
        first = seq[0]
        if not isinstance(first, nn.Linear):
            raise CollabkitError(f"the network starts with {type(first).__name__}, not a linear layer")
        return first, seq[1:]

    def _logits(self, rows: Tensor, side: Tensor) -> Tensor:
        """(B, m, out) network outputs before the output range, from user rows and item shares."""
        first, rest = self._first_linear()
        width = self._user_width()
        pre_user = rows @ first.weight[:, :width].T  # (B, h)
        x = (pre_user[:, None, :] + side[None, :, :]).reshape(-1, first.out_features)
        for layer in rest:
            x = layer(x)
        return x.reshape(len(rows), len(side), -1)
