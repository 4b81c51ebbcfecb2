"""One self-contained HTML page on what a trained model learned, with its embedding map as PNG and SVG.

The page has no external assets and no JavaScript: the map is embedded as a base64 PNG, so the file
can be mailed or archived alone. All text from the data (titles, ids) is escaped. Each section asks
the family's declared capabilities: what a model lacks is said in one plain line, never shown as an
empty table or a NaN.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from collabkit.atomic import write_atomic
from collabkit.bundle import MIN_COUNT, TrainedModel, lacks
from collabkit.errors import CollabkitError
from collabkit.interpret import Interpretation, Model, interpret_model, plot_embedding_map, trained_of
from collabkit.persist import OWN_FILES


@dataclass
class ReportFiles:
    """Where `write_report` wrote the page and the map (png and svg are None when there is no map)."""

    html: Path
    png: Path | None
    svg: Path | None

    def to_dict(self) -> dict[str, str | None]:
        return {k: None if v is None else str(v) for k, v in vars(self).items()}


def write_report(
    saved: Model,
    out_dir: str | Path,
    *,
    n: int = 5,
    min_count: int = MIN_COUNT,
    items: Sequence[Any] | None = None,
    top: int = 1000,
    n_plot: int = 50,
    source: str | Path | None = None,
    interpretation: Interpretation | None = None,
) -> ReportFiles:
    """Write `report.html`, `embedding_map.png` and `embedding_map.svg` into `out_dir`.

    Args:
        n: rows in each bias table (lowest and highest).
        min_count: leave out items and users with fewer training ratings (their estimates are noisy).
        items: raw ids or titles whose neighbours to show (default: the 3 most rated).
        top: map the `top` most rated items (the chapter maps 1000), and plot the `n_plot` most rated.
        source: the model folder, to name it on the page.
        interpretation: tables already computed by `interpret_model` with the same settings.
    """
    saved = trained_of(saved)
    out = Path(out_dir)
    check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    it = interpretation or interpret_model(saved, n=n, min_count=min_count, items=items, top=top)
    png = svg = None
    if it.embedding is not None and len(it.embedding.components) >= 2:
        png, svg = plot_embedding_map(it.embedding, out / "embedding_map", n=n_plot)
    page = _page(saved, it, png, source, n_plot)
    path = write_atomic(out / "report.html", page)
    return ReportFiles(path, png, svg)


GENERATOR = '<meta name="generator" content="collabkit report">'  # marks a report collabkit wrote


def check_report_folder(out: Path) -> None:
    """Refuse a report folder collabkit may not write into: only a new or empty folder, or one that
    holds nothing but a report collabkit wrote (its report.html carries the generator mark).

    A report replaces report.html and the map images; those of a user's own folder are theirs.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CollabkitError(f"{out} is not a folder; choose a new folder for the report")
    if not out.exists() or not any(out.iterdir()):
        return
    found = [
        p for p in out.iterdir() if p.is_symlink() or not p.is_file() or p.name not in OWN_FILES["report"]
    ]
    html = out / "report.html"
    try:
        ours = html.is_file() and GENERATOR in html.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        ours = False
    if found or not ours:
        what = f"holds {sorted(found)[0].name}" if found else "holds a report.html"
        raise CollabkitError(
            f"{out} {what}, which collabkit did not write; refusing to write a report there "
            "(choose a new or empty folder with --out)"
        )


# -- rendering ----------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; overflow-wrap: anywhere; }
.scroll { max-width: 100%; overflow-x: auto; } /* a wide table scrolls inside a phone's width */
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.sub, .why { color: #555; } .why { max-width: 70em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { padding: 0.25em 0.7em; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pair { display: flex; flex-wrap: wrap; gap: 2em; } .pair > div { flex: 1 1 min(420px, 100%); min-width: 0; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #8a3b12; }
"""


def _page(saved: TrainedModel, it: Interpretation, png: Path | None, source: Any, n_plot: int) -> str:
    name = f"{it.model} model" + (f" on {saved.data.name}" if saved.data is not None else "")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{GENERATOR}',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(name)}: what it learned</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>What the {_e(name)} learned</h1>",
        f'<p class="sub">{_e(source or "")} · written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC '
        "by collabkit</p>",
    ]
    parts += _summary(saved)
    parts += _biases(saved, it)
    parts += _embedding(saved, it, png, n_plot)
    parts += _neighbours(saved, it)
    parts += _example(saved, it)
    if it.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f'<li class="note">{_e(note)}</li>' for note in it.notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _summary(saved: TrainedModel) -> list[str]:
    caps = type(saved.model).capabilities()
    rows: list[tuple[str, Any]] = [
        ("model", saved.name),
        ("scores", "predicted ratings" if caps.ratings else "ranking scores (larger is better), not ratings"),
        ("users with training ratings", int((saved.user_counts[1:] > 0).sum())),
        ("items with training ratings", int((saved.item_counts[1:] > 0).sum())),
        ("training ratings", len(saved.train_y)),
    ]
    if saved.config is not None:
        settings = type(saved.model).describe_config(saved.config).items()
        rows += [(key.replace("_", " "), val) for key, val in settings]
    if saved.data is not None:
        rows += [("data", saved.data.name), ("source", saved.data.source), ("table rows", saved.data.n_rows)]
    if saved.split is not None:
        rows.append(("split", saved.split.describe()))
    res = saved.results
    for key in ("n_train", "n_valid"):
        if key in res:
            rows.append((key.replace("_", " "), res[key]))
    for key, val in (res.get("valid") or {}).items():
        if key != "n" and not _missing(val):  # a ranking model has no rating error: no NaN row
            rows.append((f"held-out {key}", val))
    if "fit_seconds" in res:
        rows.append(("training time (s)", res["fit_seconds"]))
    for key, val in (res.get("settings") or {}).items():
        if not _missing(val) and val != {} and val != []:  # an empty option set says nothing
            rows.append((f"setting: {key}", val))
    shown = [(k, f"{v:,}" if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v)
             for k, v in rows]  # fmt: skip
    out = ["<h2>Model</h2>", _table(pd.DataFrame(shown, columns=["", "value"]))]
    if saved.history:
        out += ["<p>Training, epoch by epoch:</p>", _table(pd.DataFrame(saved.history))]
        curve = _training_curve(saved.history)
        if curve is not None:
            out.append(
                f'<img alt="Training and validation loss by epoch" src="data:image/png;base64,{curve}">'
            )
    return out


def _training_curve(history: list[dict[str, Any]]) -> str | None:
    """The training and validation loss by epoch as a base64 PNG (None with fewer than 2 epochs)."""
    if len(history) < 2:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(5, 3))
    for col in ("train_loss", "valid_loss"):
        if col in frame:
            ax.plot(frame["epoch"], frame[col], marker="o", label=col.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _biases(saved: TrainedModel, it: Interpretation) -> list[str]:
    out = ["<h2>Biases</h2>"]
    if not it.capabilities.biases or (it.item_biases is None and it.user_biases is None):
        return [*out, f'<p class="note">{_e(lacks(saved, "biases"))}.</p>']
    out.append(
        "<p class=\"why\">An item's bias is what the model adds to its rating whatever the user's "
        "tastes. A low bias means that even people whose tastes match the item tend to rate it lower "
        "than the factors predict; a high bias, that people like it beyond the kinds of item they "
        "usually enjoy. Items with few ratings have noisy biases.</p>"
    )
    for label, table in (("Items", it.item_biases), ("Users", it.user_biases)):
        if table is None:
            out.append(f'<p class="note">{label}: model {_e(repr(saved.name))} has no such biases.</p>')
            continue
        out.append('<div class="pair">')
        for side in ("lowest", "highest"):
            rows = table[table["side"] == side].drop(columns="side")
            out.append(f"<div><h3>{label}: {side} bias</h3>{_table(rows)}</div>")
        out.append("</div>")
    return out


def _embedding(saved: TrainedModel, it: Interpretation, png: Path | None, n_plot: int) -> list[str]:
    out = ["<h2>The embedding map</h2>"]
    emap = it.embedding
    if not it.capabilities.item_vectors:
        return [*out, f'<p class="note">{_e(lacks(saved, "item_vectors"))}.</p>']
    if emap is None:
        return [*out, '<p class="note">No map for this model (see the notes).</p>']
    out.append(
        f'<p class="why">A principal component analysis of the item factors of the {len(emap.scores)} '
        "most rated items (centred, as fastai's <code>pca</code>). The model was never told about "
        "genres or eras; if the items at the two ends of a component have something in common, the "
        "model found it in the ratings alone. The share is the part of the factors' variance each "
        "component explains; a component's sign is arbitrary.</p>"
    )
    comps = emap.components.copy()
    comps["variance_share"] = [f"{v:.1%}" for v in comps["variance_share"]]
    comps["low_end"] = ["; ".join(v) for v in comps["low_end"]]
    comps["high_end"] = ["; ".join(v) for v in comps["high_end"]]
    out.append(_table(comps))
    if png is not None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        out.append(
            f"<p>The {n_plot} most rated items on the first two components "
            f"(also saved as <code>{_e(png.name)}</code> and "
            f"<code>{_e(png.with_suffix('.svg').name)}</code>):</p>"
            f'<img alt="Items on the first two principal components" src="data:image/png;base64,{data}">'
        )
    return out


def _neighbours(saved: TrainedModel, it: Interpretation) -> list[str]:
    if not it.capabilities.item_vectors or not it.neighbours:
        why = lacks(saved, "item_vectors") if not it.capabilities.item_vectors else "no item to show"
        return ["<h2>Neighbours</h2>", f'<p class="note">{_e(why)}.</p>']
    out = [
        "<h2>Neighbours</h2>",
        '<p class="why">The items whose factor vectors point most nearly the same way (cosine '
        "similarity): items the same people like, found without any description of them.</p>",
    ]
    for query, table in it.neighbours.items():
        count = table.attrs.get("n_ratings")
        extra = f" ({count} training ratings)" if count is not None else ""
        out.append(f"<h3>Nearest to {_e(query)}{_e(extra)}</h3>{_table(table)}")
    return out


def _example(saved: TrainedModel, it: Interpretation) -> list[str]:
    out = ["<h2>One prediction, explained</h2>"]
    ex = it.example
    if ex is None:
        why = lacks(saved, "explain") if not it.capabilities.explain else "no item has training ratings"
        return [*out, f'<p class="note">{_e(why)}.</p>']
    out.append(
        f"<p>User <b>{_e(ex.user)}</b> and <b>{_e(ex.title)}</b>: the parts below add up to the raw "
        f"score <b>{ex.raw:.4f}</b>, and the model's rating is <b>{ex.rating:.3f}</b>"
        + ("" if ex.actual is None else f" (the user gave it {ex.actual:g} in the training data)")
        + ".</p>"
    )
    out.append(_table(ex.parts(top=8)))
    out += [f'<p class="why">{_e(note)}</p>' for note in ex.notes]
    return out


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, numbers.Number) and not isinstance(v, bool)
            cls = ' class="num"' if num else ""
            cells.append(f"<td{cls}>{_e(_fmt(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        v = float(v)
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


__all__ = ["ReportFiles", "write_report"]
