"""What a trained model says, in raw ids and titles: biases, an embedding map, neighbours, explanations.

Every function takes a `TrainedModel` (from `collabkit.load_model`) or the `Recommender` built on
one, and returns pandas tables, so an answer can be printed, saved or tested without knowing
indices. These are the chapter's "interpreting embeddings and biases" steps as plain functions:

    saved = load_model("runs/dotbias")
    item_biases(saved, n=5)                          # lowest and highest item biases
    embedding_map(saved, k=3).components             # PCA of the item factors: what each axis means
    similar_items_table(saved, "Star Wars (1977)")   # nearest items by cosine similarity
    explain_prediction(saved, 196, 242).parts()      # a rating split into additive parts

Items (or users) with no training rating are always left out of the tables: their factors and biases
are only the initial noise, because the model never saw them.

Nothing is recomputed per call: the resolver, the seen-items matrix, the counts and means and the
unit vectors are the `TrainedModel`'s, made once. What a family cannot give is asked of
`type(model).capabilities()` and refused (or, in `interpret_model`, noted) in one plain line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.bundle import MIN_COUNT, TrainedModel, lacks, require_learned
from collabkit.errors import CollabkitError, UnknownIdError
from collabkit.models import predict_ratings
from collabkit.models.base import Capabilities, model_device
from collabkit.models.sparse import dense_rows, n_cols
from collabkit.recommend import Recommender
from collabkit.recommend.recommender import nearest_items, nearest_users

Model = TrainedModel | Recommender  # what every public function here accepts

# -- ids and titles ---------------------------------------------------------------------------


def trained_of(model: Model) -> TrainedModel:
    """The `TrainedModel` behind `model` (a Recommender's, or itself): the one coercion every
    function here starts with, so they all take whichever the caller holds."""
    if isinstance(model, Recommender):
        return model.trained
    if isinstance(model, TrainedModel):
        return model
    raise CollabkitError(f"expected a TrainedModel or a Recommender, got {type(model).__name__}")


def capabilities(model: Model) -> Capabilities:
    """What the model's family declares it can answer."""
    return type(trained_of(model).model).capabilities()


def item_title(saved: Model, item: Any) -> str:
    """The item's title where the model knows one, else its raw id as text."""
    return trained_of(saved).resolver.title(item)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _candidates(counts: Tensor, min_count: int, kind: str) -> Tensor:
    """Indices (never 0, `#na#`) with at least max(min_count, 1) training ratings; an error if none."""
    if min_count < 0:
        raise CollabkitError(f"min_count must be 0 or more, got {min_count}")
    keep = counts >= min(max(int(min_count), 1), 2**62)  # beyond any count: none kept, no overflow
    keep[0] = False
    idx = torch.nonzero(keep).squeeze(1)
    if len(idx) == 0:
        most = int(counts[1:].max()) if len(counts) > 1 else 0
        raise CollabkitError(
            f"no {kind} has at least {min_count} training ratings (the most rated has {most}); "
            "lower min_count"
        )
    return idx


def fallback_count(counts: Tensor, min_count: int, need: int) -> int:
    """`min_count`, or where no entry (item or user) has that many training ratings, the largest
    threshold that still keeps `need` of them (all trained ones, if fewer): a small table gets
    labelled tables, not a refusal.

    `counts` is (n,) training ratings per index, index 0 (`#na#`) ignored.
    """
    trained = torch.sort(counts[1:][counts[1:] > 0], descending=True).values
    if len(trained) == 0 or int(trained[0]) >= min_count:
        return int(min_count)
    return int(trained[min(max(need, 1), len(trained)) - 1])


# -- biases -----------------------------------------------------------------------------------


def _biases(saved: TrainedModel, kind: str) -> Tensor | None:
    """The family's `kind` biases in rating units, or None where it declares none (or has no such side)."""
    if not capabilities(saved).biases:
        return None
    return saved.model.item_biases() if kind == "item" else saved.model.user_biases()


def _require_biases(saved: TrainedModel, kind: str) -> Tensor:
    bias = _biases(saved, kind)
    if bias is None:
        raise CollabkitError(
            f"model {saved.name!r} has no {kind} biases; train a 'dotbias' model "
            "(collabkit train --model dotbias) to see which items are liked beyond their factors"
        )
    return bias


def _bias_table(
    bias: Tensor, counts: Tensor, means: Tensor, ids: Sequence[Any], n: int, min_count: int, kind: str
) -> tuple[pd.DataFrame, Tensor]:
    if n < 1:
        raise CollabkitError(f"n must be at least 1, got {n}")
    idx = _candidates(counts, min_count, kind)
    b = bias[idx].float()
    low = idx[torch.argsort(b)[:n]]
    high = idx[torch.argsort(b, descending=True)[:n]]
    rows = []
    for side, chosen in (("lowest", low), ("highest", high)):
        for rank, i in enumerate(chosen.tolist(), start=1):
            rows.append(
                {
                    "side": side,
                    "rank": rank,
                    kind: ids[i],
                    "bias": float(bias[i]),
                    "n_ratings": int(counts[i]),
                    "mean_rating": _nan_to_none(float(means[i])),
                }
            )
    return pd.DataFrame(rows), torch.cat([low, high])


def item_biases(saved: Model, n: int = 5, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """The `n` lowest and `n` highest item biases, with title, training rating count and mean rating.

    A bias is what the model adds to an item's rating whatever the user's tastes: a low bias means
    even people whose tastes match the item tend to rate it lower (the chapter's reading). Rows have
    `side` ('lowest' in ascending bias, then 'highest' in descending bias) and `rank` within it.
    `min_count` keeps items with at least that many training ratings, since rarely rated items have
    noisy biases.

    Raises:
        CollabkitError: the model has no biases (only 'dotbias' has them).
    """
    saved = trained_of(saved)
    i_bias = _require_biases(saved, "item")
    table, _ = _bias_table(
        i_bias, saved.item_counts, saved.item_means(), saved.items.items, n, min_count, "item"
    )
    table.insert(3, "title", [item_title(saved, i) for i in table["item"]])
    return table


def user_biases(saved: Model, n: int = 5, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """The `n` lowest and `n` highest user biases, with each user's rating count and mean rating.

    A user's bias is how generously they rate everything; the same layout as `item_biases`.
    """
    saved = trained_of(saved)
    u_bias = _require_biases(saved, "user")
    table, _ = _bias_table(
        u_bias, saved.user_counts, saved.user_means(), saved.users.items, n, min_count, "user"
    )
    return table


# -- the embedding map (PCA) --------------------------------------------------------------------


@dataclass
class EmbeddingMap:
    """PCA of the item factors of the most rated items: scores, variance shares and axis ends.

    `scores` has one row per mapped item (most rated first): item, title, n_ratings, pc1..pck.
    `components` has one row per component: component (1-based), variance_share (of all the
    variance of the mapped items' factors), and low_end / high_end: the titles scoring lowest and
    highest on it, which is how a person names an axis. A component's sign is arbitrary; it is
    fixed so that its largest loading is positive, which makes the map reproducible.
    """

    scores: pd.DataFrame
    components: pd.DataFrame
    model: str = ""

    def axis_ends(self, c: int, width: int = 2, limit: int = 28) -> tuple[str, str]:
        """The titles at the low and the high end of component `c` (0-based), shortened for a plot."""
        row = self.components.iloc[c]
        return (
            "; ".join(_short(t, limit) for t in row["low_end"][:width]),
            "; ".join(_short(t, limit) for t in row["high_end"][:width]),
        )


def _short(title: str, limit: int = 28) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "\u2026"


def embedding_map(
    saved: Model, k: int = 3, top: int = 1000, min_count: int = MIN_COUNT, n_ends: int = 5
) -> EmbeddingMap:
    """PCA (centred, as fastai's `pca`) of the item factors of the `top` most rated items.

    The chapter maps the 1000 most rated films, because the factors of rarely rated ones are mostly
    noise. For the deep models the factors are the item embeddings: they still place items the
    network treats alike close together, but no dot product of them makes the rating.
    """
    saved = trained_of(saved)
    if not capabilities(saved).item_vectors:
        raise CollabkitError(lacks(saved, "item_vectors"))
    i_fac = require_learned(saved.model.item_vectors(), "item")
    counts = saved.item_counts
    idx = _candidates(counts, min_count, "item")
    if top < 2:
        raise CollabkitError(f"top must be at least 2 items to map, got {top}")
    order = torch.argsort(counts[idx], descending=True, stable=True)
    idx = idx[order][:top]
    n_fac = n_cols(i_fac)
    if not 1 <= k <= min(n_fac, len(idx) - 1):
        raise CollabkitError(
            f"k must be between 1 and {min(n_fac, len(idx) - 1)} ({n_fac} factors, {len(idx)} items "
            f"mapped), got {k}"
        )
    x = dense_rows(i_fac, idx).double()
    x = x - x.mean(0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    signs = torch.sign(vh[torch.arange(len(vh)), vh.abs().argmax(1)])
    signs[signs == 0] = 1
    vh = vh * signs[:, None]
    scores = (x @ vh[:k].T).float()  # (n_mapped, k)
    var = s**2
    share = (var[:k] / var.sum()).tolist() if float(var.sum()) > 0 else [0.0] * k
    items = saved.items.decode(idx.tolist())
    titles = [item_title(saved, i) for i in items]
    table = pd.DataFrame({"item": items, "title": titles, "n_ratings": counts[idx].tolist()})
    for c in range(k):
        table[f"pc{c + 1}"] = scores[:, c].numpy()
    comps = []
    for c in range(k):
        ranked = torch.argsort(scores[:, c]).tolist()
        comps.append(
            {
                "component": c + 1,
                "variance_share": share[c],
                "low_end": [titles[j] for j in ranked[:n_ends]],
                "high_end": [titles[j] for j in reversed(ranked[-n_ends:])],
            }
        )
    return EmbeddingMap(table, pd.DataFrame(comps), saved.name)


def plot_embedding_map(
    emap: EmbeddingMap, out: str | Path, x: int = 0, y: int = 1, n: int = 50, title: str | None = None
) -> tuple[Path, Path]:
    """Scatter the `n` most rated mapped items on components `x` and `y` (0-based); write PNG and SVG.

    `out` is the file path without its suffix (any suffix given is replaced). The axes are labelled
    with their variance share and the titles at both ends, so the reader can name them. Returns
    (png path, svg path).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    k = len(emap.components)
    for name, c in (("x", x), ("y", y)):
        if not 0 <= c < k:
            raise CollabkitError(f"{name} component must be between 0 and {k - 1} (the map has {k}), got {c}")
    if x == y:
        raise CollabkitError(f"plot two different components, got x = y = {x}")
    pts = emap.scores.head(n)
    xs, ys = pts[f"pc{x + 1}"].to_numpy(), pts[f"pc{y + 1}"].to_numpy()
    fig, ax = plt.subplots(figsize=(13, 10), dpi=110)
    try:
        ax.axhline(0, color="#cccccc", lw=0.8, zorder=0)
        ax.axvline(0, color="#cccccc", lw=0.8, zorder=0)
        sizes = 12 + 60 * pts["n_ratings"].to_numpy() / max(1, int(pts["n_ratings"].max()))
        ax.scatter(xs, ys, s=sizes, color="#1f6fb4", alpha=0.75, zorder=2)
        share = emap.components["variance_share"]
        ax.set_xlabel(f"PC{x + 1}: {share.iloc[x]:.1%} of the variance", fontsize=11, labelpad=26)
        ax.set_ylabel(f"PC{y + 1}: {share.iloc[y]:.1%} of the variance", fontsize=11, labelpad=26)
        end: dict[str, Any] = {
            "fontsize": 9,
            "color": "#8a3b12",
            "style": "italic",
            "transform": ax.transAxes,
        }
        low, high = emap.axis_ends(x, width=3)
        ax.text(0, -0.045, f"\u2190 {low}", ha="left", va="top", **end)
        ax.text(1, -0.045, f"{high} \u2192", ha="right", va="top", **end)
        low, high = emap.axis_ends(y, width=2, limit=26)
        ax.text(-0.045, 0, f"\u2190 {low}", ha="right", va="bottom", rotation=90, **end)
        ax.text(-0.045, 1, f"{high} \u2192", ha="right", va="top", rotation=90, **end)
        ax.set_title(
            title or f"Item factors of the {len(pts)} most rated items, on PC{x + 1} and PC{y + 1}",
            fontsize=13,
        )
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        pad_x = (xs.max() - xs.min()) * 0.12 + 1e-9
        pad_y = (ys.max() - ys.min()) * 0.06 + 1e-9
        ax.set_xlim(xs.min() - pad_x, xs.max() + pad_x)
        ax.set_ylim(ys.min() - pad_y, ys.max() + pad_y)
        fig.tight_layout()  # before placing labels: it moves the axes, and placing works in pixels
        _place_labels(fig, ax, xs, ys, [_short(t, 34) for t in pts["title"]])
        base = Path(out)
        base = base.with_suffix("") if base.suffix in (".png", ".svg") else base
        base.parent.mkdir(parents=True, exist_ok=True)
        png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
        fig.savefig(png, dpi=110)
        fig.savefig(svg)
    finally:
        plt.close(fig)
    return png, svg


def _place_labels(fig: Any, ax: Any, xs: np.ndarray, ys: np.ndarray, labels: list[str]) -> None:
    """Put each label beside its point where it overlaps no other label or point (greedy, in pixels).

    Labels of crowded points are placed first; one moved far from its point gets a thin leader line.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts_px = ax.transData.transform(np.column_stack([xs, ys]))
    frame = ax.get_window_extent(renderer)
    near = [(-6, 3), (6, 3), (6, -11), (-6, -11), (0, 7), (0, -17)]
    away = [(-1, 1), (1, 1), (1, -1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
    offsets = near + [(dx * r, dy * r) for r in (14, 22, 32, 44, 58) for dx, dy in away]
    placed: list[tuple[float, float, float, float]] = []
    leaders: list[np.ndarray] = []  # points along each leader line, in pixels
    crowding = [-int(np.sum(np.hypot(*(pts_px - p).T) < 60)) for p in pts_px]
    for j in np.argsort(crowding, kind="stable"):
        for dx, dy in offsets:
            text = _annotate(ax, labels[j], xs[j], ys[j], dx, dy)
            text.update_positions(renderer)
            bb = Text.get_window_extent(text, renderer)  # the words only, not the leader line
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            gap_x = np.maximum(np.maximum(box[0] - pts_px[:, 0], pts_px[:, 0] - box[2]), 0)
            gap_y = np.maximum(np.maximum(box[1] - pts_px[:, 1], pts_px[:, 1] - box[3]), 0)
            gaps = np.hypot(gap_x, gap_y)  # (n,) pixels from each point to this label
            others = np.delete(gaps, j)
            covers_point = bool(np.any(others < 4))
            # A label without a leader line must be nearer its own point than any other.
            ambiguous = not _is_far(dx, dy) and bool(np.any(others < gaps[j] + 6))
            line = _leader_samples(pts_px[j], box) if _is_far(dx, dy) else np.zeros((0, 2))
            if (
                inside
                and not covers_point
                and not ambiguous
                and not any(_overlap(box, other) for other in placed)
                and not any(_crosses(line, other) for other in placed)
                and not any(_crosses(other, box) for other in leaders)
            ):
                placed.append(box)
                leaders.append(line)
                break
            text.remove()
        else:  # nowhere free: the nearest slot, small and grey, rather than no label at all
            _annotate(ax, labels[j], xs[j], ys[j], *near[0], faded=True)


def _annotate(ax: Any, label: str, x: float, y: float, dx: float, dy: float, faded: bool = False) -> Any:
    arrow: dict[str, Any] | None = None
    if _is_far(dx, dy):
        arrow = {"arrowstyle": "-", "color": "#888888", "lw": 0.7, "shrinkA": 1, "shrinkB": 3}
    return ax.annotate(
        label,
        (x, y),
        xytext=(dx, dy),
        textcoords="offset points",
        fontsize=7 if faded else 8,
        color="#777777" if faded else "#1a1a1a",
        ha="right" if dx < 0 else "left" if dx > 0 else "center",
        va="bottom",
        zorder=3,
        arrowprops=arrow,
    )


def _is_far(dx: float, dy: float) -> bool:
    return abs(dx) > 12 or abs(dy) > 18


def _leader_samples(point: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(20, 2) pixels along the line from a point to the centre of its label's box."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    t = np.linspace(0.05, 1.0, 20)[:, None]
    return point + t * (centre - point)


def _crosses(samples: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    x, y = samples[:, 0], samples[:, 1]
    return bool(np.any((x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# -- neighbours ---------------------------------------------------------------------------------


def similar_items_table(saved: Model, item: Any, n: int = 10, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """The `n` items whose factors point most nearly the same way as `item`'s (cosine similarity).

    `item` is a raw id or a title. Columns: rank, item, title, similarity, n_ratings, mean_rating.
    `min_count` keeps neighbours with at least that many training ratings: rarely rated items have
    small, noisy factors whose direction means little. The query is in `table.attrs`. The answers
    are `Recommender.similar_items`'s (the same search, on the bundle's unit vectors), with counts
    and means added.
    """
    saved = trained_of(saved)
    item = saved.resolver.item(item)
    idx, sims = nearest_items(saved, [item], n, min_count)
    items = saved.items.decode(idx.tolist())
    counts, means = saved.item_counts, saved.item_means()
    table = pd.DataFrame(
        {
            "rank": range(1, len(idx) + 1),
            "item": items,
            "title": [item_title(saved, i) for i in items],
            "similarity": sims.astype(np.float32).tolist(),
            "n_ratings": counts[idx].tolist(),
            "mean_rating": [_nan_to_none(v) for v in means[idx].tolist()],
        }
    )
    q = int(saved.items.o2i[item])
    table.attrs.update(query=item, query_title=item_title(saved, item), n_ratings=int(counts[q]))
    return table


def similar_users_table(saved: Model, user: Any, n: int = 10, min_count: int = MIN_COUNT) -> pd.DataFrame:
    """The `n` users whose factors are most cosine-similar to `user`'s: users of like taste.

    Columns: rank, user, similarity, n_ratings, mean_rating; `min_count` as in `similar_items_table`.
    """
    saved = trained_of(saved)
    if not capabilities(saved).user_vectors:
        raise CollabkitError(lacks(saved, "user_vectors"))
    user = saved.resolver.user(user)
    u = int(saved.users.o2i[user])
    if int(saved.user_counts[u]) == 0:
        raise UnknownIdError(f"user {user!r} has no training ratings: its vector is untrained noise")
    idx, sims = nearest_users(saved, u, n, min_count)
    table = pd.DataFrame(
        {
            "rank": range(1, len(idx) + 1),
            "user": saved.users.decode(idx.tolist()),
            "similarity": sims.astype(np.float32).tolist(),
            "n_ratings": saved.user_counts[idx].tolist(),
            "mean_rating": [_nan_to_none(v) for v in saved.user_means()[idx].tolist()],
        }
    )
    table.attrs.update(query=user, n_ratings=int(saved.user_counts[saved.users.o2i[user]]))
    return table


# -- explained predictions --------------------------------------------------------------------


@dataclass
class PredictionExplanation:
    """One predicted rating of a dot model split into parts that add up to its raw score.

    raw = offset + user_bias + item_bias + sum(factor_products), and rating = sigmoid_range(raw,
    *y_range) (or raw without a y_range) clipped to the training ratings' range, as
    `Recommender.predict` answers for the pair; a clipped value is named in `notes`.
    """

    user: Any
    item: Any
    title: str
    model: str
    offset: float  # the dot models have no global term, so it is 0: the biases carry the mean
    user_bias: float
    item_bias: float
    factor_products: np.ndarray  # (n_factors,) user factor k * item factor k
    raw: float
    rating: float
    y_range: tuple[float, float] | None
    actual: float | None = None  # the user's training rating of the item, if they gave one
    notes: list[str] = field(default_factory=list)

    @property
    def dot(self) -> float:
        """The dot product of the user's and the item's factors (the sum of `factor_products`)."""
        return float(self.factor_products.sum())

    def parts(self, top: int | None = None) -> pd.DataFrame:
        """Rows `part`, `value` whose values sum to `raw`: offset, biases, then each factor's product.

        Factors come largest contribution first; with `top`, the rest are summed in one row.
        """
        order = np.argsort(-np.abs(self.factor_products), kind="stable")
        rows = [
            ("offset" if self.offset else "offset (none in this model)", self.offset),
            ("user bias", self.user_bias),
            ("item bias", self.item_bias),
        ]
        shown = order if top is None else order[:top]
        rows += [(f"factor {k}", float(self.factor_products[k])) for k in shown]
        rest = order[len(shown) :]
        if len(rest):
            rows.append((f"other {len(rest)} factors", float(self.factor_products[rest].sum())))
        return pd.DataFrame(rows, columns=["part", "value"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "user": self.user,
            "item": self.item,
            "title": self.title,
            "model": self.model,
            "offset": self.offset,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "dot": self.dot,
            "factor_products": [float(v) for v in self.factor_products],
            "raw": self.raw,
            "rating": self.rating,
            "y_range": list(self.y_range) if self.y_range is not None else None,
            "actual": self.actual,
            "notes": list(self.notes),
        }


@torch.inference_mode()
def explain_prediction(saved: Model, user: Any, item: Any) -> PredictionExplanation:
    """Split the predicted rating of (`user`, `item`) into additive parts (dot and dotbias models).

    Costs one pair's worth of work: the ids go through the bundle's resolver and the user's actual
    rating comes from their row of the seen-items matrix, both made once.

    Raises:
        CollabkitError: for a family that declares no additive explanation (the deep models mix the
            user and item embeddings non-linearly).
    """
    saved = trained_of(saved)
    model = saved.model
    if not capabilities(saved).explain:
        raise CollabkitError(lacks(saved, "explain"))
    user, item = saved.resolver.user(user), saved.resolver.item(item)
    u, i = int(saved.users.o2i[user]), int(saved.items.o2i[item])
    parts = model.explain(u, i)
    if parts is None:  # declared, yet no parts for this pair: still one line, never a traceback
        raise CollabkitError(lacks(saved, "explain"))
    if int(saved.user_counts[u]) == 0 or int(saved.item_counts[i]) == 0:
        raise UnknownIdError(
            f"the model saw no training rating of user {user!r} or item {item!r}: their factors are "
            "untrained noise, so there is nothing to explain"
        )
    products = parts.factor_products.double().cpu().numpy()
    notes = ["offset is 0: the dot models have no global term; the biases carry the average rating"]
    if parts.user_bias is None or parts.item_bias is None:
        notes.append(f"this {saved.name!r} model has no biases, so both are 0")
    ub, ib, offset, raw = parts.user_bias or 0.0, parts.item_bias or 0.0, parts.offset, parts.raw
    rating = float(predict_ratings(model, torch.tensor([[u, i]], device=model_device(model)))[0])
    y_range = _y_range(saved)
    if y_range is not None:
        notes.append(f"rating = sigmoid(raw) * ({y_range[1]:g} - {y_range[0]:g}) + {y_range[0]:g}")
    span = saved.rating_range()  # computed once per model, not per explained prediction
    if span is not None and not span[0] <= rating <= span[1]:
        clipped = min(max(rating, span[0]), span[1])
        notes.append(
            f"the model's output {rating:.3f} is past the training ratings' range "
            f"({span[0]:g} to {span[1]:g}): the rating is {clipped:g}, as predict answers"
        )
        rating = clipped
    actual = saved.seen.rating(u, i)  # the user's row of the cached CSR, not a scan of every rating
    return PredictionExplanation(
        user=user,
        item=item,
        title=item_title(saved, item),
        model=saved.name,
        offset=offset,
        user_bias=ub,
        item_bias=ib,
        factor_products=products,
        raw=raw,
        rating=rating,
        y_range=y_range,
        actual=actual,
        notes=notes,
    )


def _y_range(saved: TrainedModel) -> tuple[float, float] | None:
    """The output range the family's settings name (None: unbounded, or no settings)."""
    if saved.config is None:
        return None
    y_range = type(saved.model).describe_config(saved.config).get("y_range")
    return None if y_range is None else (float(y_range[0]), float(y_range[1]))


# -- everything at once, for the report and the command ----------------------------------------


@dataclass
class Interpretation:
    """The tables `interpret_model` gathers; a table is None where the model cannot give it (see notes)."""

    model: str
    item_biases: pd.DataFrame | None
    user_biases: pd.DataFrame | None
    embedding: EmbeddingMap | None
    neighbours: dict[str, pd.DataFrame]  # query title -> similar_items_table
    example: PredictionExplanation | None
    notes: list[str] = field(default_factory=list)
    capabilities: Capabilities = field(default_factory=Capabilities)  # what the family declares
    score_kind: str = "rating"  # "score": a ranking model (no stars, no rating error)
    min_count: int = MIN_COUNT  # the training ratings an item or user needed to be in the tables
    # what was used: min_count, or less where no item (user) had that many ratings (see fallbacks)
    item_min_count: int = MIN_COUNT
    user_min_count: int = MIN_COUNT
    fallbacks: list[str] = field(default_factory=list)  # a line per lowered threshold, also in notes

    def to_dict(self) -> dict[str, Any]:
        """The numbers as JSON-ready values."""

        def records(df: pd.DataFrame | None) -> Any:
            if df is None:
                return None
            return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]

        def sides(df: pd.DataFrame | None) -> Any:
            if df is None:
                return None
            return {s: records(df[df["side"] == s].drop(columns="side")) for s in ("lowest", "highest")}

        emb = None
        if self.embedding is not None:
            emb = {"components": records(self.embedding.components), "n_items": len(self.embedding.scores)}
        return {
            "model": self.model,
            "item_biases": sides(self.item_biases),
            "user_biases": sides(self.user_biases),
            "embedding": emb,
            "neighbours": {q: records(t) for q, t in self.neighbours.items()},
            "example": None if self.example is None else self.example.to_dict(),
            "notes": list(self.notes),
            "capabilities": self.capabilities.to_dict(),
            "score_kind": self.score_kind,
            "min_count": self.min_count,
            "item_min_count": self.item_min_count,
            "user_min_count": self.user_min_count,
            "fallbacks": list(self.fallbacks),
        }


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def interpret_model(
    saved: Model,
    n: int = 5,
    min_count: int = MIN_COUNT,
    items: Sequence[Any] | None = None,
    k: int = 3,
    top: int = 1000,
    n_neighbours: int = 10,
) -> Interpretation:
    """Biases, the embedding map, neighbours of `items` (default: the 3 most rated) and one example.

    Each part is offered only where the family's `capabilities()` declare it; what a model cannot
    give is left as None (or empty) and said plainly in `notes`, so a report can be made for any model.
    Where no item (or user) has `min_count` training ratings, as in a small table, the tables keep
    the `n` most rated instead (`fallback_count`) and say so in `fallbacks` and `notes`: a labelled
    answer rather than a refusal. The functions for one table (`item_biases`, ...) still refuse.
    """
    saved = trained_of(saved)
    caps = capabilities(saved)
    if min_count < 0:
        raise CollabkitError(f"min_count must be 0 or more, got {min_count}")
    notes: list[str] = []
    fallbacks: list[str] = []
    name = saved.name
    least: dict[str, int] = {}
    # enough items for a bias table and for the map's k components (k + 1 points); users for a table
    for kind, counts_of, need in (("item", saved.item_counts, max(n, k + 1)), ("user", saved.user_counts, n)):
        least[kind] = fallback_count(counts_of, min_count, need)
        if least[kind] < min_count:
            top_count = int(counts_of[1:].max())
            fallbacks.append(
                f"no {kind} has {min_count} training ratings (the most rated has {top_count}); "
                f"showing {kind}s with at least {least[kind]}, whose estimates rest on few ratings"
            )
    notes += fallbacks
    item_least, user_least = least["item"], least["user"]
    ib = item_biases(saved, n, item_least) if _biases(saved, "item") is not None else None
    ub = user_biases(saved, n, user_least) if _biases(saved, "user") is not None else None
    missing = [kind for kind, table in (("item", ib), ("user", ub)) if table is None]
    if missing:
        what = " and no ".join(f"{kind} biases" for kind in missing)
        why = "" if caps.ratings else " (it ranks items by a score; it does not predict ratings)"
        notes.append(f"model {name!r} has no {what}{why}")
    counts = saved.item_counts
    if items:
        queries = [saved.resolver.item(it) for it in items]
    else:
        most = torch.argsort(counts, descending=True, stable=True)[:3].tolist()
        queries = [saved.items[i] for i in most if i != 0 and counts[i] > 0]
    emap: EmbeddingMap | None = None
    neighbours = {}
    if caps.item_vectors:
        try:
            emap = embedding_map(
                saved, k=min(k, n_cols(saved.model.item_vectors())), top=top, min_count=item_least
            )
        except CollabkitError as e:  # too few items or factors to map: the rest still stands
            notes.append(f"no embedding map: {e}")
        try:
            for q in queries:
                neighbours[item_title(saved, q)] = similar_items_table(saved, q, n_neighbours, item_least)
        except CollabkitError as e:  # factors all zero (the biases-only start kept): said, not fatal
            neighbours = {}
            notes.append(f"no similar items: {e}")
    else:
        notes.append(lacks(saved, "item_vectors"))
    example = None
    if not caps.explain:
        notes.append(lacks(saved, "explain"))
    elif queries:
        top_user = int(torch.argmax(saved.user_counts))
        example = explain_prediction(saved, saved.users[top_user], queries[0])
    else:
        notes.append("no explained prediction: no item has training ratings")
    return Interpretation(
        name, ib, ub, emap, neighbours, example, notes, caps, saved.model.score_kind, int(min_count),
        item_least, user_least, fallbacks,
    )  # fmt: skip


__all__ = [
    "EmbeddingMap",
    "Interpretation",
    "Model",
    "PredictionExplanation",
    "capabilities",
    "embedding_map",
    "explain_prediction",
    "fallback_count",
    "interpret_model",
    "item_biases",
    "item_title",
    "plot_embedding_map",
    "similar_items_table",
    "similar_users_table",
    "trained_of",
    "user_biases",
]
