"""The protocol every built-in model implements, and the registry that names them.

The rest of collabkit (training, recommendation, interpretation, evaluation, persistence) asks a
model through these methods and never asks what class it is, so a model family is one file:
subclass `CollabModel`, implement its methods, decorate it with `@register("name")`.

What a model knows is indices (`user_idx`, `item_idx`; index 0 is `#na#`), never raw ids.

Scoring a block of users against candidate items goes in three steps, so that the item side is
prepared once per candidate set and a block of users costs one product:
    rows = model.user_rows(user_idx)        # (B, d) whatever represents a user
    side = model.item_side(item_idx)        # prepared once for the candidate items
    raw  = model.score_block(rows, side)    # (B, m) ranking scores, larger is better
    model.raw_to_rating(raw)                # what the scores mean: ratings (or scores, see score_kind)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from collabkit.data.side import SideColumn
from collabkit.errors import CollabkitError
from collabkit.evaluate import nearest_level as nearest_level  # re-exported: models' public name
from collabkit.evaluate import rmse
from collabkit.models.core import Module
from collabkit.models.settings import FamilySettings, Recipe, parse_settings
from collabkit.models.sparse import CSR, dense_rows

MAX_TABLE = 2**31 - 1  # users or items a model can index (int32 positions in its tables)

Metric = Callable[[Tensor, Tensor], float]
ScoreKind = Literal["rating", "score"]


class ModelConfig:
    """Everything needed to rebuild a model: its family, its sizes and the family's typed settings.

    `ModelConfig("dotbias", n_users, n_items, n_factors=50, y_range=(0, 5.5))` checks the settings
    against the family's `Settings` class (unknown or out-of-range ones are one-line errors naming
    the settings the family takes); `to_dict()`/`from_dict()` round-trip through JSON.
    """

    __slots__ = ("family", "n_users", "n_items", "settings")

    def __init__(
        self, family: str, n_users: int, n_items: int, settings: FamilySettings | None = None, **values: Any
    ) -> None:
        fam = family_class(family)
        for name, n in (("users", n_users), ("items", n_items)):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TABLE:
                raise CollabkitError(f"a model needs 1 to {MAX_TABLE:,} {name}, got {n!r}")
        if settings is not None and values:
            raise CollabkitError("give a ModelConfig either a settings object or setting values, not both")
        if settings is None:
            settings = parse_settings(family, fam.Settings, values)
        elif not isinstance(settings, fam.Settings):
            raise CollabkitError(f"{family} takes {fam.Settings.__qualname__}, got {type(settings).__name__}")
        self.family, self.n_users, self.n_items, self.settings = family, n_users, n_items, settings

    @property
    def model(self) -> str:
        """The family's name (what `--model` calls it)."""
        return self.family

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        parts = [repr(self.family), f"n_users={self.n_users}", f"n_items={self.n_items}"]
        parts += [f"{k}={v!r}" for k, v in self.settings.used().items()]
        return f"ModelConfig({', '.join(parts)})"

    def replace(self, **values: Any) -> ModelConfig:
        """A copy with some settings changed (checked again)."""
        return ModelConfig(self.family, self.n_users, self.n_items, **{**self.settings.used(), **values})

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "settings": self.settings.used(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict) or set(data) != {"family", "n_users", "n_items", "settings"}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise CollabkitError(
                f"model settings must hold family, n_users, n_items and settings, got {keys}"
            )
        if not isinstance(data["settings"], dict):
            raise CollabkitError("model settings: 'settings' must be an object")
        return cls(data["family"], data["n_users"], data["n_items"], **data["settings"])


@dataclass
class Explanation:
    """A raw score split into additive parts: offset + user bias + item bias + sum(products)."""

    offset: float
    user_bias: float | None  # None: the model has no such bias
    item_bias: float | None
    factor_products: Tensor  # (k,)
    raw: float


@dataclass(frozen=True)
class Capabilities:
    """What a family can answer, declared in its file: the command, the service, the page and the
    report ask this (never `getattr` or a try/except) to offer a feature or refuse it in one line.
    """

    ratings: bool = True  # predicts ratings (False: ranking scores only; `score_kind` says which)
    item_vectors: bool = True  # similar items, the embedding map
    user_vectors: bool = True  # similar users
    biases: bool = False  # user and item biases in rating units (not counts)
    fold_in: bool = True  # a new user from a few ratings
    explain: bool = False  # a pair's score as additive parts
    lr_find: bool = True  # trained by gradient steps, so the learning-rate finder applies

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


class CollabModel(Module):
    """Base of the built-in models: the protocol (see the module docstring) with general defaults.

    A subclass must implement `from_config`, `forward`, `item_vectors` and, unless its user rows are
    its user factors, `user_rows`. Every other method has a default that is right for a model whose
    raw score is a rating made by `forward`.
    """

    name: ClassVar[str] = ""  # set by @register
    Settings: ClassVar[type[FamilySettings]] = FamilySettings  # the family's typed settings
    # the Learner's one-cycle runs by name ("fast", "chapter"); empty: the family fits itself
    recipes: ClassVar[dict[str, Recipe]] = {}
    score_kind: ClassVar[ScoreKind] = "rating"  # "score": the model ranks, it does not predict stars
    trains_by_gradient: ClassVar[bool] = True  # False: `fit_direct` fits it in closed form
    default_fold_in_strength: ClassVar[float] = 1.0
    # what the family can answer beyond scoring; `capabilities()` adds `ratings` and `lr_find`
    has_item_vectors: ClassVar[bool] = True
    has_user_vectors: ClassVar[bool] = True
    has_biases: ClassVar[bool] = False
    can_fold_in: ClassVar[bool] = True
    can_explain: ClassVar[bool] = False

    @classmethod
    def capabilities(cls) -> Capabilities:
        """The family's declared capabilities, in one object.

        A capability counts only where the family also implements the method behind it, so a
        family that declares nothing and overrides nothing claims nothing it cannot do.
        """

        def implements(name: str) -> bool:
            return getattr(cls, name) is not getattr(CollabModel, name)

        return Capabilities(
            ratings=cls.score_kind == "rating",
            item_vectors=cls.has_item_vectors and implements("item_vectors"),
            user_vectors=cls.has_user_vectors and implements("user_vectors"),
            biases=cls.has_biases and implements("item_biases"),
            fold_in=cls.can_fold_in and implements("fold_in"),
            explain=cls.can_explain and implements("explain"),
            lr_find=cls.trains_by_gradient,
        )

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ModelConfig) -> CollabModel:
        raise NotImplementedError

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        """The settings completed from the data loaders `dls` (embedding sizes, rating levels)."""
        return settings

    @classmethod
    def reads_side_columns(cls, settings: dict[str, Any]) -> bool:
        """Whether the family, with these settings, reads side columns from the table (so the
        training workflow joins a MovieLens release's user table for it)."""
        return False

    @classmethod
    def describe_config(cls, config: ModelConfig) -> dict[str, Any]:
        """The settings this family used, by name (for reports and summaries)."""
        return config.settings.used()

    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        """Fit on all training pairs at once (families with `trains_by_gradient = False`)."""
        raise CollabkitError(f"model {self.name!r} trains by gradient steps, not in closed form")

    # -- training --------------------------------------------------------------------------------
    def default_loss(self) -> Callable[[Tensor, Tensor], Tensor] | None:
        """The loss to train with (None: mean squared error of the output)."""
        return None

    def default_metrics(self) -> list[Metric]:
        return [rmse]

    def output_to_rating(self, out: Tensor) -> Tensor:
        """(B,) ratings from what `forward` returns."""
        return out.reshape(-1)

    def output_to_preds(self, out: Tensor) -> Tensor:
        """What `Learner.get_preds` returns for `forward`'s output (ratings, or level probabilities)."""
        return self.output_to_rating(out)

    def dot_tables(self) -> DotTables | None:
        """The tables of a plain dot model, for the fused training step (None: train by autograd)."""
        return None

    # -- tables ----------------------------------------------------------------------------------
    def user_vectors(self) -> Tensor | CSR:
        """(n_users, k) user vectors, detached: what `similar_users` compares (sparse rows, a CSR,
        for a family whose vectors are its interactions)."""
        raise CollabkitError(f"model {self.name!r} has no user factors")

    def item_vectors(self) -> Tensor | CSR:
        """(n_items, k) item vectors, detached: what `similar_items` and the embedding map use
        (a CSR for a family whose vectors are interaction columns)."""
        raise NotImplementedError

    def user_biases(self) -> Tensor | None:
        """(n_users,) user biases, or None for a model without them."""
        return None

    def item_biases(self) -> Tensor | None:
        """(n_items,) item biases, or None for a model without them."""
        return None

    # -- scoring ---------------------------------------------------------------------------------
    def user_rows(self, user_idx: Tensor) -> Tensor:
        """(B, d) the representation of users that `score_block` takes."""
        return dense_rows(self.user_vectors(), user_idx)

    def item_side(self, item_idx: Tensor) -> Any:
        """The items' part of scoring, prepared once per candidate set."""
        return dense_rows(self.item_vectors(), item_idx).T.contiguous()  # (k, m)

    def score_block(self, rows: Tensor, side: Any) -> Tensor:
        """(B, m) raw scores of user rows against prepared items; larger ranks higher."""
        return rows @ side

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        """Ratings (or, for score_kind "score", scores) from raw scores; monotone."""
        return raw

    def pair_width(self) -> int:
        """Floats held per (user, item) pair while scoring a block: sizes the blocks."""
        return 1

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """(d,) user row for a new user from their ratings; the item side stays fixed.

        `prior` (d,) is the average trained user's row, the answer with no ratings; `strength` is
        how strongly the answer is pulled towards it.
        """
        raise CollabkitError(f"model {self.name!r} cannot fold in a new user")

    def user_side_columns(self) -> list[SideColumn]:
        """The side columns a new user may state (`about`), e.g. age and gender; most have none."""
        return []

    def prior_with_side(self, prior: Tensor, about: dict[str, Any]) -> Tensor:
        """The average user's row (`prior`) with the side columns a new user states in `about`:
        where a fold-in starts, and the answer with no ratings (families with user side columns)."""
        raise CollabkitError(
            f"model {self.name!r} reads no side columns of its users, so it cannot use what a new user "
            f"states about themselves ({', '.join(map(str, about))}); the hybrid family reads them"
        )

    def explain(self, user_idx: int, item_idx: int) -> Explanation | None:
        """The raw score of one pair as additive parts, or None where it has none."""
        return None

    def prepare(self, dls: Any) -> None:
        """Read what the family takes from the table besides the training pairs (a hybrid's side
        columns), once, before training; saved with the weights. Most families take nothing."""

    def attach_training(self, x: Tensor, y: Tensor) -> None:
        """Rebuild what the model derives from its training rows instead of saving it (a ranking
        family's interaction matrix); `load_model` calls it with the folder's rows. Most keep nothing."""

    @classmethod
    def upgrade_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The tensor shapes `upgrade_state` makes of a file with these shapes (read before any data)."""
        return shapes

    @classmethod
    def upgrade_state(cls, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weights saved by an earlier collabkit in today's layout, so no saved model is lost."""
        return state

    def scored_items(self) -> Tensor | None:
        """(n_items,) bool: the items this model can score, where it leaves some out (EASE's item
        cap); None where it scores every item. Candidates outside it are never returned."""
        return None


@dataclass
class DotTables:
    """A dot model's parameters as the fused step sees them (views of the model's weights)."""

    users: Tensor  # (n_users, k)
    items: Tensor  # (n_items, k)
    user_bias: Tensor | None  # (n_users, 1)
    item_bias: Tensor | None  # (n_items, 1)
    y_range: tuple[float, float] | None


_FAMILIES: dict[str, type[CollabModel]] = {}


def register(name: str) -> Callable[[type[CollabModel]], type[CollabModel]]:
    """Class decorator: make a CollabModel subclass buildable by name (and loadable from disk)."""

    def add(cls: type[CollabModel]) -> type[CollabModel]:
        if not (isinstance(cls, type) and issubclass(cls, CollabModel)):
            raise TypeError(f"{cls!r} is not a CollabModel subclass")
        if cls.recipes and not cls.trains_by_gradient:
            raise TypeError(f"{cls.__name__} has training recipes but fits itself (trains_by_gradient False)")
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return add


def model_names() -> tuple[str, ...]:
    """The names of the registered model families."""
    return tuple(_FAMILIES)


def check_model_name(name: str) -> str:
    if name not in _FAMILIES:
        raise CollabkitError(f"unknown model {name!r}; expected one of: {', '.join(_FAMILIES)}")
    return name


def family(name: str) -> type[CollabModel]:
    """The class registered as `name`."""
    return _FAMILIES[check_model_name(name)]


family_class = family  # ModelConfig's own name for it (its `family` attribute is the name)


def build_model(config: ModelConfig) -> CollabModel:
    """A freshly initialised model of `config`."""
    return family(config.family).from_config(config)


def predict_ratings(model: nn.Module, x: Tensor) -> Tensor:
    """(B,) ratings from any model: a CollabModel maps its output, another module's is flattened."""
    out = model(x)
    if isinstance(model, CollabModel):
        return model.output_to_rating(out)
    return out.reshape(-1)


def numeric_failure(family: str, what: str, settings: dict[str, Any], way_out: str) -> CollabkitError:
    """The one-line error for a fit or solve that failed numerically, naming the settings behind it."""
    named = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
    return CollabkitError(f"{family}: {what} failed numerically with {named}; {way_out}")


def require_finite(
    family: str, what: str, tensors: dict[str, Tensor], settings: dict[str, Any], way_out: str
) -> None:
    """Raise `numeric_failure` when a fit left NaN or infinite values in any of `tensors`."""
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise numeric_failure(family, f"{what} ({', '.join(bad)} not finite)", settings, way_out)


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        b = next(model.buffers(), None)
        return b.device if b is not None else torch.device("cpu")
    return p.device
