"""Which settings a run uses: the user's, else the fast recipe (no batch size given) or the chapter's."""

from __future__ import annotations

import pytest

from collabkit import CollabkitError
from collabkit.train.recipes import CHAPTER, FAST, Recipe, resolve_recipe


def test_no_batch_size_means_the_fast_recipe() -> None:
    assert resolve_recipe("dotbias") == FAST["dotbias"]
    assert resolve_recipe("dotbias", epochs=3) == Recipe(
        FAST["dotbias"].bs, 3, FAST["dotbias"].lr, FAST["dotbias"].wd
    )


def test_a_batch_size_means_the_chapter_for_the_rest() -> None:
    assert resolve_recipe("nn", bs=64) == CHAPTER
    assert resolve_recipe("dot", bs=32, lr=1e-2) == Recipe(32, CHAPTER.epochs, 1e-2, CHAPTER.wd)


def test_unknown_model() -> None:
    with pytest.raises(CollabkitError, match="unknown model 'svd'"):
        resolve_recipe("svd")
