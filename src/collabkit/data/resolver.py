"""Raw ids and titles as a person types them -> the ids a model knows, with no silent guess.

An id always works. A title works when exactly one item has it; a title shared by several items
(ML-100k has 18, such as "Chasing Amy (1997)", items 246 and 268) is an `AmbiguousIdError` that
lists every candidate with its id and rating count, so the caller can ask again by id. A title that
matches nothing ("star wars", "the godfather") is an `UnknownIdError` whose one line offers the
closest titles, each with its id and rating count: "did you mean 'Star Wars (1977)' (id 50, 583
ratings)?"; it never answers for one of them.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from collabkit.data.vocab import Vocab
from collabkit.errors import AmbiguousIdError, UnknownIdError

MAX_SUGGESTIONS = 5  # titles a "did you mean" offers at most
MIN_CONTAINED = 3  # shorter text ("a", "th") is inside too many titles to say anything

_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*), (the|a|an|les|le|la|l'|il|el|der|die|das|den)$")
_NOT_WORD = re.compile(r"[\W_]+")


def plain_title(title: str) -> str:
    """A title as a person may type it: any case, no year, the article first, words only.

    `plain_title("Godfather, The (1972)")` is "the godfather"; `plain_title("Star Wars (1977)")` is
    "star wars" (MovieLens writes titles "Name, The (year)").
    """
    text = _YEAR.sub("", title.casefold().strip())
    moved = _TRAILING_ARTICLE.match(text)
    if moved:
        text = f"{moved.group(2)} {moved.group(1)}"
    return _NOT_WORD.sub(" ", text).strip()


class IdResolver:
    """Parses user ids, and item ids or titles, against a model's vocabularies."""

    def __init__(
        self,
        users: Vocab,
        items: Vocab,
        titles: Mapping[Any, str] | None = None,
        item_counts: np.ndarray | None = None,
    ) -> None:
        self.users, self.items = users, items
        self.titles = dict(titles or {})
        self.item_counts = item_counts
        self._by_title: dict[str, list[Any]] = defaultdict(list)
        self._by_folded: dict[str, list[Any]] = defaultdict(list)
        self._by_plain: dict[str, list[Any]] = defaultdict(list)  # plain_title(title) -> items
        for item, title in self.titles.items():
            if item in items:
                self._by_title[str(title)].append(item)
                self._by_folded[str(title).casefold()].append(item)
                self._by_plain[plain_title(str(title))].append(item)

    def title(self, item: Any) -> str:
        """The item's title where known, else its id as text."""
        return str(self.titles.get(item, item))

    def ambiguous_titles(self) -> dict[str, list[Any]]:
        """Every title that names more than one item, with its items."""
        return {t: list(ids) for t, ids in self._by_title.items() if len(ids) > 1}

    def same_title(self, item: Any) -> list[Any]:
        """The other items that share `item`'s title (none for an item without a title)."""
        title = self.titles.get(item)
        return [] if title is None else [i for i in self._by_title.get(str(title), []) if i != item]

    def user(self, text: Any) -> Any:
        """The raw user id that `text` stands for (ids may be typed as text)."""
        found = _as_id(text, self.users)
        if found is _MISSING:
            raise UnknownIdError(
                f"user {text!r} is not an id the model knows ({len(self.users) - 1:,} users)"
            )
        return found

    def item(self, text: Any) -> Any:
        """The raw item id that `text` stands for: an id, or a title that names one item (any case)."""
        found = _as_id(text, self.items)
        if found is not _MISSING:
            return found
        if isinstance(text, str):
            key = text.strip()
            for table, probe in ((self._by_title, key), (self._by_folded, key.casefold())):
                ids = table.get(probe)
                if ids:
                    if len(ids) > 1:
                        self._ambiguous(key, ids)
                    return ids[0]
            close = self.closest(key)
            if close:
                raise UnknownIdError(
                    f"item {text!r} is not an id or title the model knows; did you mean "
                    + ", ".join(self._offer(item) for item in close)
                    + "?"
                )
        hint = " or title" if self._by_title else ""
        raise UnknownIdError(
            f"item {text!r} is not an id{hint} the model knows ({len(self.items) - 1:,} items)"
        )

    def closest(self, text: str, n: int = MAX_SUGGESTIONS) -> list[Any]:
        """Up to `n` items whose titles come nearest `text`, for a "did you mean" (no exact match).

        Titles are compared plain (`plain_title`: any case, no year, "Godfather, The" as "the
        godfather"). The titles that contain the text, those equal to it first, then the most rated;
        where none does, difflib's close matches (ratio at least 0.6), closest first. Text of digits
        only is an id, mistyped or unknown: it is offered only titles that are those digits ("1984
        (1984)"), not near numbers.
        """
        key = plain_title(text)
        if not key or not self._by_plain:
            return []
        if key.isdigit():
            return list(self._by_plain.get(key, []))[:n]
        if len(key) >= MIN_CONTAINED:
            inside = [(t != key, item) for t, ids in self._by_plain.items() if key in t for item in ids]
            inside.sort(key=lambda hit: (hit[0], -self._count(hit[1]), self.title(hit[1])))
            if inside:
                return [item for _, item in inside[:n]]
        close = difflib.get_close_matches(key, list(self._by_plain), n=n, cutoff=0.6)
        return [item for t in close for item in self._by_plain[t]][:n]

    def _count(self, item: Any) -> int:
        return 0 if self.item_counts is None else int(self.item_counts[self.items.o2i[item]])

    def _offer(self, item: Any) -> str:
        """`'Star Wars (1977)' (id 50, 583 ratings)`: a title to ask for again, by id if need be."""
        count = "" if self.item_counts is None else f", {self._count(item):,} ratings"
        return f"{self.title(item)!r} (id {item!r}{count})"

    def _ambiguous(self, title: str, ids: list[Any]) -> None:
        candidates = []
        for item in ids:
            count = None if self.item_counts is None else int(self.item_counts[self.items.o2i[item]])
            candidates.append({"item": item, "title": self.title(item), "n_ratings": count})
        listed = "; ".join(
            f"id {c['item']!r}" + ("" if c["n_ratings"] is None else f" ({c['n_ratings']} ratings)")
            for c in candidates
        )
        raise AmbiguousIdError(
            f"title {title!r} names {len(ids)} items: {listed}; give the item by id", candidates
        )


class _Missing:
    pass


_MISSING: Any = _Missing()


def _as_id(text: Any, vocab: Vocab) -> Any:
    """`text` as an id of `vocab`, or _MISSING: a non-text value as it is; text by `Vocab.find`
    (the id whose printed form it is, after trimming spaces: "1_0", "+10", "１０" are not 10)."""
    if isinstance(text, bool):
        return _MISSING
    if not isinstance(text, str):
        try:
            return text if text in vocab else _MISSING
        except TypeError:
            return _MISSING
    found = vocab.find(text)
    return _MISSING if found is None else found
