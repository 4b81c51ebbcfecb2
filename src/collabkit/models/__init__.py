"""Built-in models by name, their JSON-ready configuration, and one way to get ratings from any model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.models.classifier import RatingClassifier, RatingCrossEntropy
from collabkit.models.core import Embedding, Module, emb_sz_rule, get_emb_sz, sigmoid_range
from collabkit.models.dot import DotProduct, EmbeddingDotBias
from collabkit.models.nn import EmbeddingNN

ModelName = Literal["dot", "dotbias", "nn", "classifier"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a built-in model; round-trips through JSON."""

    model: str  # one of MODEL_NAMES
    n_users: int
    n_items: int
    n_factors: int = 50  # dot, dotbias
    y_range: tuple[float, float] | None = (0.0, 5.5)  # dot, dotbias, nn (None: unbounded)
    layers: list[int] = field(default_factory=lambda: [100, 50])  # nn, classifier
    emb_szs: list[tuple[int, int]] | None = None  # nn, classifier; None: fastai's rule
    ps: list[float] = field(default_factory=list)  # dropout after each hidden layer
    embed_p: float = 0.0  # dropout on the concatenated embeddings
    levels: list[float] | None = None  # classifier: the rating levels, ascending

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.y_range is not None:
            lo, hi = (float(v) for v in self.y_range)
            if not lo < hi:
                raise CollabkitError(f"y_range must be (low, high) with low < high, got {self.y_range}")
            self.y_range = (lo, hi)
        if self.emb_szs is not None:
            self.emb_szs = [(int(n), int(w)) for n, w in self.emb_szs]
        if self.model == "classifier" and not self.levels:
            raise CollabkitError("the classifier needs its rating levels (e.g. [1, 2, 3, 4, 5])")
        if self.n_factors < 1:
            raise CollabkitError(f"n_factors must be at least 1, got {self.n_factors}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CollabkitError(f"unknown model settings {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def embedding_sizes(self) -> list[tuple[int, int]]:
        return self.emb_szs or [
            (self.n_users, emb_sz_rule(self.n_users)),
            (self.n_items, emb_sz_rule(self.n_items)),
        ]


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise CollabkitError(f"unknown model {name!r}; expected one of: {', '.join(MODEL_NAMES)}")
    return name


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model of `config` (indices in, ratings or logits out)."""
    c = config
    if c.model == "dot":
        return DotProduct(c.n_users, c.n_items, c.n_factors, y_range=c.y_range)
    if c.model == "dotbias":
        return EmbeddingDotBias(c.n_factors, c.n_users, c.n_items, y_range=c.y_range)
    if c.model == "nn":
        return EmbeddingNN(c.embedding_sizes(), c.layers, ps=c.ps, embed_p=c.embed_p, y_range=c.y_range)
    assert c.levels is not None  # checked in __post_init__
    return RatingClassifier(c.embedding_sizes(), c.levels, c.layers, ps=c.ps, embed_p=c.embed_p)


def factor_tables(model: nn.Module) -> tuple[Tensor, Tensor]:
    """(user factors (n_users, k), item factors (n_items, k)) of a built-in model, detached.

    For the deep models these are the embedding tables (their widths may differ between users and
    items); for the dot models, the factors whose dot product makes the rating.
    """
    if isinstance(model, EmbeddingDotBias):
        return model.u_weight.weight.detach(), model.i_weight.weight.detach()
    if isinstance(model, DotProduct):
        return model.user_factors.weight.detach(), model.item_factors.weight.detach()
    if isinstance(model, EmbeddingNN):
        user_emb, item_emb = model.embeds[0], model.embeds[1]
        assert isinstance(user_emb, nn.Embedding) and isinstance(item_emb, nn.Embedding)
        return user_emb.weight.detach(), item_emb.weight.detach()
    raise CollabkitError(
        f"{type(model).__name__} is not a built-in collabkit model; it has no known factor tables"
    )


def bias_tables(model: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(user biases (n_users,), item biases (n_items,)) of a bias model, or None for other models."""
    if isinstance(model, EmbeddingDotBias):
        return model.u_bias.weight.detach().squeeze(1), model.i_bias.weight.detach().squeeze(1)
    return None


def predict_ratings(model: nn.Module, x: Tensor) -> Tensor:
    """(B,) ratings from any model: the classifier's expectation, or the model's output flattened."""
    out = model(x)
    if isinstance(model, RatingClassifier):
        return model.expected_rating(out)
    return out.reshape(-1)


__all__ = [
    "MODEL_NAMES",
    "DotProduct",
    "Embedding",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "ModelConfig",
    "ModelName",
    "Module",
    "RatingClassifier",
    "RatingCrossEntropy",
    "bias_tables",
    "build_model",
    "check_model_name",
    "factor_tables",
    "get_emb_sz",
    "predict_ratings",
    "sigmoid_range",
]
