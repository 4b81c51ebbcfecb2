"""JSON-ready values: the one place NaN, NumPy, torch and paths are turned into plain JSON.

JSON has no NaN or infinity (a strict reader rejects Python's `NaN`), so every number that is not
finite becomes null; NumPy and torch scalars and arrays become Python numbers and lists; paths
become strings. `dumps` writes with `allow_nan=False`, so anything missed fails loudly here rather
than in a reader.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping
from typing import Any


def jsonable(obj: Any) -> Any:
    """`obj` as str, int, float, bool, None, list and dict only; non-finite floats become None.

    Mappings keep their keys as text; tuples, sets and arrays become lists; NumPy/torch scalars
    and arrays (anything with `tolist`) their Python values; dataclasses their fields; paths and
    enums their value; anything else its `str`.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):
        return int(obj)  # an IntEnum or a bool-like int subclass as a plain int
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars, torch tensors (detached, any device)
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu()
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    return str(obj)


def _key(key: Any) -> str:
    """A mapping key as JSON text (JSON keys are strings; None and NaN keys read as 'null')."""
    if isinstance(key, str):
        return key
    plain = jsonable(key)
    return "null" if plain is None else plain if isinstance(plain, str) else json.dumps(plain)


def dumps(obj: Any, *, indent: int | None = 1, ensure_ascii: bool = False) -> str:
    """`jsonable(obj)` as JSON text, strict: a non-finite number can never reach the text."""
    return json.dumps(jsonable(obj), indent=indent, ensure_ascii=ensure_ascii, allow_nan=False)


__all__ = ["dumps", "jsonable"]
