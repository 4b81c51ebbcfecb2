"""The chapter's building blocks: Module without super().__init__(), Embedding, create_params,
sigmoid_range, pca."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


class _PreInitMeta(type(nn.Module)):  # type: ignore[misc]
    """Runs nn.Module.__init__ before the subclass's __init__, as fastai's Module does."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj: Any = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj.__init__(*args, **kwargs)
        return obj


class Module(nn.Module, metaclass=_PreInitMeta):
    """An nn.Module whose subclasses may skip `super().__init__()` (the chapter's models do)."""

    def __init__(self) -> None:  # nn.Module.__init__ already ran in the metaclass
        pass


def trunc_normal_(x: Tensor, std: float = 0.01, mean: float = 0.0) -> Tensor:
    """Fill `x` in place with a normal truncated at two standard deviations (fastai's init)."""
    with torch.no_grad():
        return x.normal_().fmod_(2).mul_(std).add_(mean)


class Embedding(nn.Embedding):
    """nn.Embedding initialised as fastai does: truncated normal, std 0.01."""

    def __init__(self, ni: int, nf: int, std: float = 0.01) -> None:
        super().__init__(ni, nf)
        trunc_normal_(self.weight, std=std)


def create_params(size: Sequence[int]) -> nn.Parameter:
    """A trainable tensor of shape `size`, drawn from a normal with std 0.01 (the chapter's own).

    The chapter writes `DotProductBias` from scratch with it, in place of `Embedding`:
    `self.user_factors = create_params([n_users, n_factors])`, then indexes it,
    `self.user_factors[x[:, 0]]`.
    """
    return nn.Parameter(torch.zeros(*size).normal_(0, 0.01))


def sigmoid_range(x: Tensor, low: float, high: float) -> Tensor:
    """Squeeze `x` into the open interval (low, high) with a sigmoid."""
    return torch.sigmoid(x) * (high - low) + low


class SigmoidRange(Module):
    """`sigmoid_range` as a layer, for nn.Sequential."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = float(low), float(high)

    def forward(self, x: Tensor) -> Tensor:
        return sigmoid_range(x, self.low, self.high)


def one_hot(index: int | Sequence[int] | Tensor, n: int) -> Tensor:
    """A float one-hot vector (or matrix, one row per index) of length `n`.

    `one_hot(3, n) @ factors` equals `factors[3]`: the chapter's point that an embedding
    lookup is a matrix product with a one-hot vector, done without building the vector.
    """
    idx = torch.as_tensor(index, dtype=torch.long)
    return torch.nn.functional.one_hot(idx, n).float()


def emb_sz_rule(n_cat: int) -> int:
    """fastai's rule of thumb for an embedding width: min(600, round(1.6 * n**0.56))."""
    return min(600, round(1.6 * n_cat**0.56))


def get_emb_sz(classes: Any, sz_dict: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
    """(n_classes, width) for the user and item vocabularies of `classes` (or of dls.classes).

    `classes` may be a `CollabDataLoaders` or a mapping from column name to vocabulary.
    """
    mapping = getattr(classes, "classes", classes)
    sz_dict = dict(sz_dict or {})
    return [(len(v), sz_dict.get(name, emb_sz_rule(len(v)))) for name, v in mapping.items()]


def pca(x: Tensor, k: int = 3) -> Tensor:
    """The first `k` principal-component scores of the rows of `x` (centred, as fastai's pca).

    The chapter's `movie_w.pca(3)` is fastai's method patched onto `torch.Tensor`; collabkit adds
    nothing to torch's classes, so write it `pca(movie_w, 3)` (the same numbers: fastai projects the
    centred rows on the first `k` singular vectors too).
    """
    x = x.detach().float()
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:k].T
