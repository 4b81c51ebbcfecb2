"""`collabkit interpret`: what a trained model says (biases, embedding map, neighbours)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collabkit.cli.app import JsonOpt, MinCount, app, clean_errors, emit
from collabkit.defaults import MIN_COUNT

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.interpret import Interpretation


@app.command()
def interpret(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.html and the map (default MODEL_DIR/report)."),
    ] = None,
    n: Annotated[int, typer.Option("-n", help="Rows in each bias table (lowest and highest).")] = 5,
    min_count: MinCount = MIN_COUNT,
    item: Annotated[
        list[str] | None, typer.Option("--item", help="Item id or title to show neighbours of (repeat).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an HTML report on what the model learned, and print its tables (or --json numbers)."""
    with clean_errors():
        # lazy: torch and the models load only when the command runs, so --help stays instant
        from collabkit.interpret import interpret_model
        from collabkit.persist import load_model
        from collabkit.report import write_report

        saved = load_model(model_dir)
        result = interpret_model(saved, n=n, min_count=min_count, items=item or None)
        files = write_report(
            saved,
            out or model_dir / "report",
            source=model_dir,
            interpretation=result,
            n=n,
            min_count=min_count,
        )
        if as_json:
            emit({**result.to_dict(), "report": files.to_dict()}, True)
        else:
            typer.echo(_text(result))
            typer.echo(f"\nreport written to {files.html}")


def _text(result: Interpretation) -> str:
    """The tables as aligned plain text, for a terminal."""

    def least(count: int) -> str:
        return f"at least {count} training rating{'' if count == 1 else 's'}"

    if result.item_min_count == result.user_min_count:
        heading = f"items and users with {least(result.item_min_count)}"
    else:
        heading = f"items with {least(result.item_min_count)}, users with {least(result.user_min_count)}"
    # a lowered threshold is said first, beside the heading it changed, not only among the notes
    blocks = ["\n".join([*result.fallbacks, f"{heading} (--min-count {result.min_count})"])]

    def show(title: str, df: pd.DataFrame) -> None:
        blocks.append(
            f"{title}\n{df.to_string(index=False, float_format=lambda v: f'{v:.3f}', max_colwidth=40)}"
        )

    for label, table in (("item", result.item_biases), ("user", result.user_biases)):
        if table is not None:
            for side in ("lowest", "highest"):
                show(f"{side} {label} biases", table[table["side"] == side].drop(columns=["side"]))
    if result.embedding is not None:
        comps = result.embedding.components.copy()
        for end in ("low_end", "high_end"):
            comps[end] = ["; ".join(v[:3]) for v in comps[end]]
        show("embedding map (PCA of item factors)", comps)
    for query, table in result.neighbours.items():
        show(f"nearest to {query}", table.drop(columns=["item"]) if "title" in table else table)
    if result.example is not None:
        ex = result.example
        given = "" if ex.actual is None else f" (rated {ex.actual:g} in training)"
        show(
            f"user {ex.user} and {ex.title}: raw {ex.raw:.3f} -> rating {ex.rating:.3f}{given}",
            ex.parts(top=5),
        )
    blocks += [f"note: {note}" for note in result.notes if note not in result.fallbacks]
    return "\n\n".join(blocks)
