"""Argument checks for the public Python API: a wrong type or an out-of-range value is one
CollabkitError line that names the argument, the value given and what is allowed, raised where the
call comes in, never a TypeError or OverflowError from deep inside and never a nonsense value
accepted silently (a bool for a count, a negative learning rate, NaN)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from collabkit.errors import CollabkitError

BIG = 2**62  # past any count this library can hold: a larger "whole number" is refused, not overflowed


def shown(value: Any) -> str:
    """`repr(value)`, cut to 60 characters so that an error stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def whole(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """`value` as an int from `low` to `high` (an int, a NumPy int or a float with no fraction)."""
    huge = _is_number(value) and math.isfinite(float(value)) and high is None and value > BIG
    span = f"from {low:,} to {high:,}" if high is not None else f"of at least {low:,}"
    span = f"from {low:,} to 2**62" if huge else span
    ok = _is_number(value) and math.isfinite(float(value)) and int(value) == value
    if not ok or not low <= int(value) <= (BIG if high is None else high):
        raise CollabkitError(f"{name} must be a whole number {span}, got {shown(value)}")
    return int(value)


def number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a finite float within [low, high] (either end open when asked)."""
    parts = []
    if low is not None:
        parts.append(f"{'above' if low_open else 'at least'} {low:g}")
    if high is not None:
        parts.append(f"{'below' if high_open else 'at most'} {high:g}")
    allowed = f"a finite number{' ' + ' and '.join(parts) if parts else ''}"
    if not _is_number(value) or not math.isfinite(float(value)):
        raise CollabkitError(f"{name} must be {allowed}, got {shown(value)}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise CollabkitError(f"{name} must be {allowed}, got {shown(value)}")
    return v


def flag(name: str, value: Any) -> bool:
    """`value` as a bool: True or False only (a string such as "no" would be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise CollabkitError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def one_of(name: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` if it is one of the `allowed` strings."""
    if not isinstance(value, str) or value not in allowed:
        raise CollabkitError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {shown(value)}")
    return value


def one_id(name: str, value: Any) -> Any:
    """`value` as a raw id: a hashable scalar (a number or a string), not a bool, list or dict.

    A bool is refused because `True == 1`: it would silently stand for the id 1.
    """
    if (
        isinstance(value, (bool, np.bool_))
        or value is None
        or not isinstance(value, Hashable)
        or isinstance(value, (tuple, frozenset, bytes))
    ):
        raise CollabkitError(f"{name} must be one raw id (a number or a string), got {shown(value)}")
    return value


def ids(name: str, values: Any, what: str = "id") -> list[Any]:
    """`values` as a list of raw ids: a list, tuple, array or Series of them, not one id or a string."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise CollabkitError(f"{name} must be a list of raw {what}s, got {shown(values)}")
    out = list(values)
    for v in out:
        one_id(f"each of {name}", v)
    return out


def path(name: str, value: Any) -> Path:
    """`value` as a path: a string or an os.PathLike."""
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        raise CollabkitError(f"{name} must be a folder path (a string or a Path), got {shown(value)}")
    return Path(value)
