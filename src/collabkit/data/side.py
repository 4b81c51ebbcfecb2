"""Side columns: what a table says about its users and items besides the ratings (age, genres).

A side column holds one value per user (a user column: age, gender) or per item (an item column:
genres, year). The hybrid model (`collabkit.models.hybrid`) embeds them beside the user and item
embeddings, so a user or an item with few ratings still gets what its kind tends to get.

Each column becomes small integer codes, 0 meaning unknown:
- a category (text, or whole numbers with at most `CATEGORY_MAX_NUMBERS` distinct values, such as
  ML-1M's occupation codes): one code per distinct value;
- a number with more distinct values (ML-100k's ages): one code per quantile bin;
- a tag list ("Action|Comedy", any text column with a "|"): one code per tag, a row holding up to
  its most tags, padded with 0.

The description (`SideColumn`: name, side, kind, levels) is a model setting, saved in config.json;
the codes are saved with the weights, so a saved model answers without the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from collabkit.data.datasets import MOVIELENS, movielens_users
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError, DataError

Side = Literal["user", "item"]
Kind = Literal["category", "number", "tags"]

DEFAULT_USER_COLUMNS = ("age", "gender", "occupation")  # MovieLens' user table, where present
DEFAULT_ITEM_COLUMNS = ("genres",)
CATEGORY_MAX_NUMBERS = 30  # whole numbers with more distinct values are binned as quantities
MAX_LEVELS = 10_000  # a side column is a handful of kinds, not an id: more values are refused
TAG_SEP = "|"


class SideColumn(BaseModel):
    """One side column as a model records it: its levels are what codes 1, 2, ... stand for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    side: Side
    kind: Kind
    levels: list[str]  # category values, tags, or number bins ("20-24")
    edges: list[float] = []  # a number column's inner bin edges (len(levels) - 1 of them)
    width: int = 1  # codes per row: 1, or a tag column's most tags on one row

    @property
    def n_codes(self) -> int:
        """Codes 0 (unknown) to len(levels)."""
        return len(self.levels) + 1


def with_movielens_users(table: pd.DataFrame, data_name: str) -> pd.DataFrame:
    """`table` with the release's user columns (age, gender, occupation) joined on `user`, for the
    MovieLens releases that ship a user table (ml-100k, ml-1m); any other table is returned as is."""
    release = MOVIELENS.get(data_name)
    if release is None or not release.has_users or "user" not in table.columns:
        return table
    missing = [c for c in DEFAULT_USER_COLUMNS if c not in table.columns]
    if not missing:
        return table
    users = movielens_users(data_name, progress=False)[["user", *missing]]
    joined = table.merge(users, on="user", how="left", validate="many_to_one")
    joined.index = table.index
    joined.attrs = dict(table.attrs)
    return joined


def chosen_columns(table: pd.DataFrame | None, given: Sequence[str] | None, side: Side) -> list[str]:
    """The side columns of one side: those given, or by default MovieLens' that the table has."""
    if given is not None:
        return list(given)
    defaults = DEFAULT_USER_COLUMNS if side == "user" else DEFAULT_ITEM_COLUMNS
    return [] if table is None else [c for c in defaults if c in table.columns]


def describe_columns(
    table: pd.DataFrame | None, key: str, names: Sequence[str], side: Side, bins: int
) -> list[SideColumn]:
    """Each named column of `table` described: checked to hold one value per `key` (the user or
    item column), its kind decided and its levels listed. Errors name the column and a row."""
    if not names:
        return []
    if table is None:
        raise CollabkitError(
            f"{side} side columns {list(names)} need the ratings table, and these data loaders have none"
        )
    out = []
    for name in names:
        if name not in table.columns:
            raise DataError(
                f"no {side} side column {name!r}; the table has: {', '.join(map(str, table.columns))}"
            )
        if name == key or name in ("user", "item", "rating", "timestamp"):
            raise DataError(f"{name!r} is a ratings column, not a side column of the {side}s")
        values = _one_per_entity(table, key, name, side)
        out.append(_describe(name, side, values, bins))
    return out


def column_codes(table: pd.DataFrame, key: str, vocab: Vocab, column: SideColumn) -> np.ndarray:
    """(len(vocab), column.width) int64 codes of every user (or item) of `vocab`, 0 where unknown."""
    if column.name not in table.columns:
        raise DataError(
            f"the model reads {column.side} side column {column.name!r}, and this table has none; "
            f"it has: {', '.join(map(str, table.columns))}"
        )
    values = _one_per_entity(table, key, column.name, column.side)
    rows = vocab.encode(values.index, unknown="na")
    out = np.zeros((len(vocab), column.width), dtype=np.int64)
    if column.kind == "tags":
        position = {tag: i + 1 for i, tag in enumerate(column.levels)}
        for row, value in zip(rows, values.to_numpy(), strict=True):
            codes = [position.get(t, 0) for t in _tags(value)][: column.width]
            out[row, : len(codes)] = codes
    elif column.kind == "number":
        number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        known = np.isfinite(number)
        out[rows[known], 0] = np.searchsorted(np.asarray(column.edges), number[known], side="right") + 1
    else:
        position = {level: i + 1 for i, level in enumerate(column.levels)}
        out[rows, 0] = [position.get(_text(v), 0) for v in values.to_numpy()]
    out[0] = 0  # the #na# row: no one
    return out


def value_codes(column: SideColumn, value: Any) -> np.ndarray:
    """(column.width,) the codes of one value a new user (or item) gives: a category level, a
    number (binned), or tags ("a|b" or a list). A level the column never had is refused, listing
    some it has: the model has no embedding for it."""
    out = np.zeros(column.width, dtype=np.int64)
    if column.kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise CollabkitError(f"side column {column.name!r} holds numbers; {value!r} is not one") from None
        if not np.isfinite(number):
            raise CollabkitError(f"side column {column.name!r}: {value!r} is not a finite number")
        out[0] = int(np.searchsorted(np.asarray(column.edges), number, side="right")) + 1
        return out
    given = [_text(v) for v in value] if isinstance(value, (list, tuple)) else (
        _tags(value) if column.kind == "tags" else [_text(value)]
    )  # fmt: skip
    position = {level: i + 1 for i, level in enumerate(column.levels)}
    unknown = [v for v in given if v not in position]
    if unknown or not given or (column.kind == "category" and len(given) != 1):
        some = ", ".join(column.levels[:12]) + (", ..." if len(column.levels) > 12 else "")
        what = (
            f"no {column.name!r} value {unknown[0]!r}"
            if unknown
            else f"{value!r} is not one {column.name!r} value"
        )
        raise CollabkitError(f"{what}; it has: {some}")
    codes = [position[v] for v in given][: column.width]
    out[: len(codes)] = codes
    return out


def _one_per_entity(table: pd.DataFrame, key: str, name: str, side: Side) -> pd.Series:
    """The column's value for each `key` that has one, refused where one user (item) has two."""
    known = table[[key, name]].dropna(subset=[name]).drop_duplicates()
    twice = known[known[key].duplicated(keep=False)]
    if len(twice):
        who = twice[key].iloc[0]
        seen = twice[twice[key] == who][name].head(2).tolist()
        rows = np.flatnonzero((table[key] == who).to_numpy() & (table[name] == seen[1]).to_numpy())
        raise DataError(
            f"side column {name!r} has two values for {side} {who!r} ({seen[0]!r}, and {seen[1]!r} in "
            f"table row {int(rows[0])}); a {side} column needs one value per {side}",
            column=name,
        )
    return known.set_index(key)[name]


def _describe(name: str, side: Side, values: pd.Series, bins: int) -> SideColumn:
    if values.empty:
        raise DataError(f"side column {name!r} is empty: no {side} has a value", column=name)
    text = values.map(_text)
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > CATEGORY_MAX_NUMBERS:
        number = values.to_numpy(dtype=float)
        inner = np.unique(np.quantile(number, np.linspace(0, 1, bins + 1)[1:-1])).tolist()
        return SideColumn(name=name, side=side, kind="number", levels=_bin_labels(inner), edges=inner)
    if text.str.contains(TAG_SEP, regex=False).any():
        lists = [_tags(v) for v in values.to_numpy()]
        tags = sorted({t for row in lists for t in row})
        _check_levels(name, len(tags))
        return SideColumn(name=name, side=side, kind="tags", levels=tags, width=max(len(r) for r in lists))
    levels = sorted(text.unique().tolist())
    _check_levels(name, len(levels))
    return SideColumn(name=name, side=side, kind="category", levels=levels)


def _check_levels(name: str, n: int) -> None:
    if n > MAX_LEVELS:
        raise DataError(
            f"side column {name!r} has {n:,} distinct values; a side column describes kinds of users or "
            f"items (at most {MAX_LEVELS:,} values), not ids",
            column=name,
        )


def _text(value: object) -> str:
    """A value as its level: whole floats as ints ("3", not "3.0"), text stripped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _tags(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [t.strip() for t in str(value).split(TAG_SEP) if t.strip()]


def _bin_labels(edges: list[float]) -> list[str]:
    """Labels of the bins that inner `edges` cut: "<20", "20 to <25", ..., ">=45"."""
    if not edges:
        return ["any"]
    mid = [f"{a:g} to <{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"<{edges[0]:g}", *mid, f">={edges[-1]:g}"]
