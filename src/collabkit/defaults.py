"""Defaults shared by every way in (library, command, service, page), in a module light enough for
the command's option declarations: it imports nothing, so `collabkit --help` does not load torch."""

from __future__ import annotations

from typing import Literal

MIN_COUNT = 1  # an item (or user) needs this many training ratings to be an answer: fewer, and it is noise

# The built-in model families, in registration order; tests/test_families.py checks this against
# the registry, so the command can name them without importing the models.
ModelName = Literal[
    "dot", "dotbias", "nn", "classifier", "ease", "popular", "itemknn", "userknn", "ials", "easeknn", "bpr"
]
BUILT_IN_FAMILIES: tuple[str, ...] = (
    "dot", "dotbias", "nn", "classifier", "ease", "popular", "itemknn", "userknn", "ials", "easeknn", "bpr",
)  # fmt: skip
