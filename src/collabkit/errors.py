"""Errors collabkit raises on purpose: each carries one line a person can act on."""

from __future__ import annotations

from pathlib import Path


class CollabkitError(ValueError):
    """Bad input or state that the user can fix; the CLI prints it as one line and exits 2."""


class DataError(CollabkitError):
    """A problem in an input table, located by file, line and column where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownIdError(CollabkitError, KeyError):
    """A raw user or item id that the model's vocabulary does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousIdError(UnknownIdError):
    """A title that names more than one item; the message lists the candidates with their ids."""

    def __init__(self, message: str, candidates: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.candidates = list(candidates or [])
