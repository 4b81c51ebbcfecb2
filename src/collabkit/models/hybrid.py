"""The hybrid deep model: the chapter's `EmbeddingNN` with the users' and items' side columns.

fastai's tabular model embeds every categorical column and feeds the concatenation to an MLP; the
chapter's `EmbeddingNN` is that model with two columns, user and item. This family adds the side
columns (`collabkit.data.side`): a user's input is [user embedding, one embedding per user column]
and an item's is [item embedding, one per item column, the mean of its tags' embeddings], so a
user or an item with few ratings still gets what its kind tends to get.

On ML-100k the side columns are, by default, the user table's age (binned), gender and occupation
and the items' genres (`--data ml-100k` and `ml-1m` join the user table); on any other table, name
the columns with `-o user_columns=a,b -o item_columns=c` (each must hold one value per user, or
per item). Unknown values (a new user, a missing cell) get code 0, an embedding of zeros.

The scoring split of `EmbeddingNN` holds: the first layer acts on [user input, item input], so a
user's row is its whole input and candidates are prepared once.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from collabkit.data.side import (
    Side,
    SideColumn,
    chosen_columns,
    column_codes,
    describe_columns,
    value_codes,
)
from collabkit.errors import CollabkitError
from collabkit.models.base import ModelConfig, register
from collabkit.models.core import emb_sz_rule
from collabkit.models.nn import EmbeddingNN, NNSettings, YRange
from collabkit.models.settings import CHAPTER, FamilySettings, Recipe

# Chosen on validation parts of ML-100k u1's training rows only (`collabkit tune`, 16 trials, then
# a seeded 10%): with the side columns the network takes more weight decay, embedding dropout and
# epochs than `nn`'s recipe (validation RMSE 0.9201 against 0.9508 with nn's recipe and no
# embedding dropout; nn itself 0.9291 with this recipe and 0.9471 with its own).
HYBRID_RECIPES = {"fast": Recipe(bs=512, epochs=10, lr=8e-3, wd=0.6, keep_best=True), "chapter": CHAPTER}


class HybridSettings(NNSettings):
    """The deep network's settings, with the side columns it reads."""

    embed_p: float = Field(0.25, ge=0.0, lt=1.0, description="dropout on the embeddings")
    user_columns: list[str] | None = Field(
        None, description="side columns of the users (default: age, gender, occupation where present)"
    )
    item_columns: list[str] | None = Field(
        None, description="side columns of the items (default: genres where present)"
    )
    bins: int = Field(8, ge=2, le=100, description="quantile bins of a numeric side column")
    side: list[SideColumn] | None = Field(None, description="the side columns' levels; from the data")

    @field_validator("user_columns", "item_columns", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        """`-o user_columns=age,gender` arrives as one text; "" or "none" means no columns."""
        if isinstance(v, str):
            return [] if v.strip().lower() in ("", "none") else [n.strip() for n in v.split(",") if n.strip()]
        return v

    def columns(self, side: str) -> list[SideColumn]:
        return [c for c in self.side or [] if c.side == side]


@register("hybrid")
class HybridNN(EmbeddingNN):
    """`EmbeddingNN` whose user and item inputs include their side columns' embeddings."""

    Settings: ClassVar[type[FamilySettings]] = HybridSettings
    recipes = HYBRID_RECIPES
    default_fold_in_strength = 1.0

    def __init__(
        self,
        emb_szs: list[tuple[int, int]],
        side: list[SideColumn],
        layers: list[int],
        ps: list[float],
        embed_p: float = 0.0,
        y_range: YRange = None,
    ) -> None:
        self.side = side
        user_cols = [c for c in side if c.side == "user"]
        item_cols = [c for c in side if c.side == "item"]
        self.user_side_embeds = nn.ModuleList([_side_embedding(c) for c in user_cols])
        self.item_side_embeds = nn.ModuleList([_side_embedding(c) for c in item_cols])
        self.register_buffer(
            "user_codes", torch.zeros(emb_szs[0][0], sum(c.width for c in user_cols), dtype=torch.long)
        )
        self.register_buffer(
            "item_codes", torch.zeros(emb_szs[1][0], sum(c.width for c in item_cols), dtype=torch.long)
        )
        self._user_spans = _spans(user_cols)
        self._item_spans = _spans(item_cols)
        self._user_side_width = sum(_side_width(c) for c in user_cols)
        # the network sees [user input, item input]: widen the embeddings' share by the side widths
        extra = self._user_side_width + sum(_side_width(c) for c in item_cols)
        super().__init__(emb_szs, layers, ps=ps, embed_p=embed_p, y_range=y_range, extra_inputs=extra)

    user_codes: Tensor  # (n_users, total width of the user columns) codes, 0 unknown
    item_codes: Tensor  # (n_items, total width of the item columns)

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        """Embedding sizes as `nn`'s, and each side column described from the table (once)."""
        base = super().settings_from_data(settings, dls)
        if base.get("side") is not None:
            return base
        checked = cast(HybridSettings, HybridSettings(**{**base, "side": None}))
        table = getattr(dls, "table", None)
        side: list[SideColumn] = []
        sides: list[tuple[Side, str, list[str] | None]] = [
            ("user", dls.user_name, checked.user_columns),
            ("item", dls.item_name, checked.item_columns),
        ]
        for which, key, given in sides:
            side += describe_columns(table, key, chosen_columns(table, given, which), which, checked.bins)
        return {
            **base,
            "user_columns": [c.name for c in side if c.side == "user"],
            "item_columns": [c.name for c in side if c.side == "item"],
            "side": [c.model_dump() for c in side],
        }

    @classmethod
    def reads_side_columns(cls, settings: dict[str, Any]) -> bool:
        return True

    @classmethod
    def describe_config(cls, config: ModelConfig) -> dict[str, Any]:
        """The settings, with each side column as its name and size ("age 8 bins, genres 19 tags")."""
        s = cast(HybridSettings, config.settings)
        kinds = {"number": "bins", "tags": "tags", "category": "values"}
        side = ", ".join(f"{c.name} {len(c.levels)} {kinds[c.kind]}" for c in s.side or []) or "none"
        return {**s.used(), "side": side}

    @classmethod
    def from_config(cls, config: ModelConfig) -> HybridNN:
        s = cast(HybridSettings, config.settings)
        return cls(
            s.embedding_sizes(config.n_users, config.n_items), list(s.side or []), s.layers, s.ps,
            embed_p=s.embed_p, y_range=s.y_range,
        )  # fmt: skip

    def prepare(self, dls: Any) -> None:
        """Each user's and item's side codes, read from the table once before training."""
        if not self.side:
            return
        table = getattr(dls, "table", None)
        if table is None:
            raise CollabkitError(
                "hybrid: its side columns need the ratings table, and these loaders have none"
            )
        for codes, key, vocab, side in (
            (self.user_codes, dls.user_name, dls.user_vocab, "user"),
            (self.item_codes, dls.item_name, dls.item_vocab, "item"),
        ):
            parts = [column_codes(table, key, vocab, c) for c in self.side if c.side == side]
            if parts:
                codes.copy_(torch.from_numpy(np.concatenate(parts, axis=1)))

    # -- the inputs: an entity's embedding beside its side columns' ------------------------------
    def user_inputs(self, user_idx: Tensor) -> Tensor:
        return self._with_side(
            self._emb(0)(user_idx), self.user_codes[user_idx], self.user_side_embeds, self._user_spans
        )

    def item_inputs(self, item_idx: Tensor) -> Tensor:
        return self._with_side(
            self._emb(1)(item_idx), self.item_codes[item_idx], self.item_side_embeds, self._item_spans
        )

    @torch.no_grad()
    def user_vectors(self) -> Tensor:
        """Every user's whole input (embedding and side columns): what similar users compares."""
        return self.user_inputs(torch.arange(len(self.user_codes), device=self.user_codes.device))

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        """Every item's whole input: similar items and the map see genres as well as ratings."""
        return self.item_inputs(torch.arange(len(self.item_codes), device=self.item_codes.device))

    def user_side_columns(self) -> list[SideColumn]:
        return [c for c in self.side if c.side == "user"]

    @torch.no_grad()
    def prior_with_side(self, prior: Tensor, about: dict[str, Any]) -> Tensor:
        """The average user's embedding beside the embeddings of the levels `about` states (an
        unstated column keeps the average user's share)."""
        columns = [c for c in self.side if c.side == "user"]
        names = [c.name for c in columns]
        if not names:
            return super().prior_with_side(prior, about)
        unknown = [k for k in about if k not in names]
        if unknown:
            raise CollabkitError(
                f"{unknown[0]!r} is not a side column of this model's users; it reads: {', '.join(names)}"
            )
        row = prior.clone()
        start = int(self._emb(0).weight.shape[1])
        for column, emb in zip(columns, self.user_side_embeds, strict=True):
            width = _side_width(column)
            if column.name in about:
                codes = torch.from_numpy(value_codes(column, about[column.name])).to(row.device)
                row[start : start + width] = self._with_side(
                    row.new_zeros(1, 0), codes[None], nn.ModuleList([emb]), [(0, column.width)]
                )[0]
            start += width
        return row

    def _user_width(self) -> int:
        return int(self._emb(0).weight.shape[1]) + self._user_side_width

    @staticmethod
    def _with_side(own: Tensor, codes: Tensor, embeds: nn.ModuleList, spans: list[tuple[int, int]]) -> Tensor:
        parts = [own]
        for emb, (start, stop) in zip(embeds, spans, strict=True):
            c = codes[:, start:stop]
            total = emb(c).sum(dim=1)  # code 0 is the padding row: zeros
            count = (c > 0).sum(dim=1, keepdim=True).clamp_min(1)
            parts.append(total / count)  # a tag list: the mean of its tags
        return torch.cat(parts, dim=1)


def _side_width(column: SideColumn) -> int:
    """A side column's embedding width: fastai's rule for its number of codes."""
    return emb_sz_rule(column.n_codes)


def _side_embedding(column: SideColumn) -> nn.Embedding:
    """An embedding of a side column's codes, code 0 fixed at zeros."""
    emb = nn.Embedding(column.n_codes, _side_width(column), padding_idx=0)
    with torch.no_grad():
        emb.weight.normal_(0, 0.01).index_fill_(0, torch.tensor([0]), 0.0)
    return emb


def _spans(columns: list[SideColumn]) -> list[tuple[int, int]]:
    out, start = [], 0
    for c in columns:
        out.append((start, start + c.width))
        start += c.width
    return out
