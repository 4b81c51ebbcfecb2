"""Shared pieces of the `collabkit` command: the app, error handling, JSON output, common options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from collabkit.data.splits import SplitSpec
from collabkit.errors import CollabkitError

app = typer.Typer(
    help="Collaborative filtering on PyTorch: train, evaluate and use recommendation models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextmanager
def clean_errors() -> Iterator[None]:
    """Bad input ends in one line on stderr and exit status 2, never a traceback."""
    try:
        yield
    except CollabkitError as e:
        typer.echo(f"collabkit: error: {e}", err=True)
        raise typer.Exit(2) from None
    except FileNotFoundError as e:
        typer.echo(f"collabkit: error: {e.filename}: file not found", err=True)
        raise typer.Exit(2) from None


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# Options shared by the commands that read a table.
DataOpt = Annotated[
    str, typer.Option("--data", help="A MovieLens name (ml-100k, ml-1m, ...) or a CSV/TSV/Parquet path.")
]
UserCol = Annotated[str, typer.Option("--user-col", help="User column of a file.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="Item column of a file.")]
RatingCol = Annotated[str, typer.Option("--rating-col", help="Rating column of a file.")]
TimeCol = Annotated[
    str | None, typer.Option("--timestamp-col", help="Timestamp column of a file (time splits).")
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        help="random | u1..u5 | ua | ub (ML-100k's canonical splits) | kfold | last (each user's latest) "
        "| time (a cut-off).",
    ),
]
ValidPct = Annotated[float, typer.Option("--valid-pct", help="Share held out by random and time splits.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the split, initialisation and shuffling.")]
FoldOpt = Annotated[int, typer.Option("--fold", help="Which fold is held out, with --split kfold (0-based).")]
KOpt = Annotated[int, typer.Option("--k", help="Number of folds, with --split kfold.")]
LastN = Annotated[int, typer.Option("--last-n", help="Ratings per user held out, with --split last.")]
Cutoff = Annotated[
    float | None,
    typer.Option("--cutoff", help="Timestamp from which ratings are held out (--split time); default: none, "
                 "the latest --valid-pct."),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
MinCount = Annotated[
    int,
    typer.Option(
        "--min-count",
        help="Only items (and users) with at least this many training ratings (1: all trained).",
    ),
]


def split_spec(
    split: str,
    valid_pct: float = 0.2,
    seed: int = 42,
    fold: int = 0,
    k: int = 5,
    last_n: int = 1,
    cutoff: float | None = None,
) -> SplitSpec:
    """The split the command's split options describe (validated)."""
    return SplitSpec(split, valid_pct, seed, fold, k, last_n, cutoff)
