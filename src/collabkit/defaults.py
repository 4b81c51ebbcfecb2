"""Defaults shared by every way in (library, command, service, page), in a module light enough for
the command's option declarations: it imports nothing, so `collabkit --help` does not load torch."""

from __future__ import annotations

from typing import Literal

# An item (or user) needs this many training ratings to be an answer (a neighbour, a recommendation,
# a bias table row): with fewer, its vector and bias are mostly the initialisation and weight decay.
# On ML-100k, 10 keeps 1,152 of 1,682 films and 98% of the ratings; at 1, Toy Story's nearest
# neighbours were films with 1, 1 and 2 ratings, and at 5 an 8-rating film still sat among Star Wars'
# six nearest. Pass min_count=1 (--min-count 1) for every trained item.
MIN_COUNT = 10

# The built-in model families, in registration order; tests/test_families.py checks this against
# the registry, so the command can name them without importing the models.
ModelName = Literal[
    "dot", "dotbias", "nn", "classifier", "hybrid", "ease", "popular", "itemknn", "userknn", "ials",
    "easeknn", "bpr", "als", "bayesmf", "blend",
]  # fmt: skip
BUILT_IN_FAMILIES: tuple[str, ...] = (
    "dot", "dotbias", "nn", "classifier", "hybrid", "ease", "popular", "itemknn", "userknn", "ials",
    "easeknn", "bpr", "als", "bayesmf", "blend",
)  # fmt: skip
