"""Raw ids <-> contiguous indices; index 0 is kept for an unknown value (`#na#`), as in fastai."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from collabkit.errors import UnknownIdError

NA = "#na#"
# What `Vocab.encode` does with an id the vocabulary lacks: "na" maps it to index 0 (`#na#`, as
# fastai does), "error" raises UnknownIdError. Not to be confused with what a trained model answers
# for such an id (`collabkit.recommend.recommender`'s prediction policy: refuse, or the mean).
UnknownIdEncoding = Literal["na", "error"]
_PRINTED_INT = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)  # what str() of a Python int prints


def _plain(value: Any) -> Any:
    """NumPy scalars become Python ones so a vocabulary round-trips through JSON."""
    return value.item() if isinstance(value, np.generic) else value


class Vocab(Sequence[Any]):
    """The sorted distinct values of one column; `vocab[i]` is the raw id of index `i`.

    Index 0 is `#na#`, where unknown ids land under the `"na"` policy. `o2i` maps a raw id back
    to its index, like fastai's `CategoryMap`.
    """

    def __init__(self, items: Iterable[Any], *, name: str = "item") -> None:
        values = [_plain(v) for v in items]
        if values and values[0] == NA:
            values = values[1:]
        self.name = name
        self.items: list[Any] = [NA, *values]
        self.o2i: dict[Any, int] = {v: i for i, v in enumerate(self.items)}
        if len(self.o2i) != len(self.items):
            raise ValueError(f"{name} vocabulary has repeated values")
        self._index = pd.Index(self.items[1:])
        self._printed: dict[str, Any] | None = None  # str(id) -> id for ids neither text nor int

    @classmethod
    def from_values(cls, values: Iterable[Any], *, name: str = "item") -> Vocab:
        """The vocabulary of a column: its distinct values, sorted."""
        uniq = pd.unique(pd.Series(list(values) if not hasattr(values, "dtype") else values))
        try:
            ordered = sorted(uniq)
        except TypeError:  # mixed types: order by text, still deterministic
            ordered = sorted(uniq, key=str)
        return cls(ordered, name=name)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:  # type: ignore[override]
        return self.items[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __contains__(self, value: object) -> bool:
        return value in self.o2i and value != NA

    def __repr__(self) -> str:
        head = ", ".join(map(repr, self.items[:5]))
        return f"Vocab({self.name}: {len(self)} classes [{head}{', ...' if len(self) > 5 else ''}])"

    def encode(self, values: Iterable[Any], unknown: UnknownIdEncoding = "na") -> np.ndarray:
        """Indices (int64) of raw ids; unknown ids become 0 or raise, by `unknown`."""
        arr = values if isinstance(values, (pd.Series, np.ndarray)) else list(values)
        if len(arr) <= 16 and all(type(v) in (int, str) for v in arr):
            # a request's few ids: a dict look-up beats pandas' indexer set-up (bools and floats,
            # which compare equal to ints in a dict, take pandas' way)
            codes = np.array([0 if v == NA else self.o2i.get(v, 0) for v in arr], dtype=np.int64)
        else:
            codes = self._index.get_indexer(arr).astype(np.int64) + 1
        if unknown not in ("na", "error"):
            raise ValueError(f"unknown={unknown!r}; expected 'na' or 'error'")
        if unknown == "error" and (codes == 0).any():
            bad = np.asarray(arr, dtype=object)[codes == 0][0]
            raise UnknownIdError(
                f"{self.name} {bad!r} is not in the model's vocabulary "
                f"({len(self) - 1} known {self.name}s); it may only be in the validation data"
            )
        return codes

    def find(self, text: str) -> Any | None:
        """The id that `text` names, or None: the id whose `str()` is `text` after trimming spaces.

        Exactly that and nothing more: for an integer id 10, "10" and " 10 " match, but "1_0",
        "+10", "010", "10.0", fullwidth "１０" and Arabic-Indic "١٠" do not (Python's int() would
        take them all). A text id matches itself, trimmed.
        """
        key = text.strip()
        if key == NA:
            return None
        if key in self.o2i:
            return key
        if _PRINTED_INT.fullmatch(key):
            number = int(key)
            index = self.o2i.get(number)
            if index is not None and type(self.items[index]) is int:  # not 10.0 or True
                return number
            return None
        if self._printed is None:
            self._printed = {
                str(v): v for v in self.items[1:] if not isinstance(v, str) and type(v) is not int
            }
        return self._printed.get(key)

    def decode(self, indices: Iterable[int]) -> list[Any]:
        """Raw ids of indices."""
        return [self.items[int(i)] for i in indices]

    def to_list(self) -> list[Any]:
        """The values in index order, `#na#` first (JSON-ready)."""
        return list(self.items)


def encode_pairs(
    users: Vocab, items: Vocab, user_ids: Any, item_ids: Any, unknown: UnknownIdEncoding = "na"
) -> np.ndarray:
    """The (N, 2) int64 array of [user_idx, item_idx] for raw ids: the models' input layout.

    The one place raw id pairs become index pairs; `unknown` as in `Vocab.encode`.
    """
    u = users.encode(user_ids, unknown)  # (N,)
    i = items.encode(item_ids, unknown)  # (N,)
    if len(u) != len(i):
        raise ValueError(f"{len(u)} user ids but {len(i)} item ids; they must pair up")
    return np.stack([u, i], axis=1)  # (N, 2)
