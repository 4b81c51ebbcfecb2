"""`collabkit recommend | similar`: a trained model in use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from collabkit.cli.app import JsonOpt, MinCount, app, clean_errors, emit
from collabkit.defaults import MIN_COUNT
from collabkit.errors import CollabkitError

ModelDir = Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")]
NOpt = Annotated[int, typer.Option("-n", "--n", help="How many to list.")]


@app.command()
def recommend(
    model_dir: ModelDir,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Raw id of a user the model knows.")
    ] = None,
    rate: Annotated[
        list[str] | None,
        typer.Option(
            "--rate",
            help='A new user\'s rating as ITEM=RATING, item by id or title (repeat): "Star Wars (1977)=5".',
        ),
    ] = None,
    about: Annotated[
        list[str] | None,
        typer.Option(
            "--about",
            help="A new user's side column as COLUMN=VALUE (repeat), for a model that reads them "
            "(hybrid): --about age=25 --about gender=F; with or without --rate.",
        ),
    ] = None,
    n: NOpt = 10,
    min_count: MinCount = MIN_COUNT,
    strength: Annotated[
        float | None,
        typer.Option(
            "--strength",
            help="With --rate: pull towards the average user (default: the model's, "
            "chosen by bench/coldstart.py); lower is more personal.",
        ),
    ] = None,
    popularity_penalty: Annotated[
        float,
        typer.Option(
            "--popularity-penalty",
            help="With --user: lower popular items' scores by this many "
            "standard deviations per standard deviation of log popularity (0: none).",
        ),
    ] = 0.0,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="With --user: also list items the user rated in training.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Top-n items for a known user (--user), a new user's ratings (--rate), or, with neither, anybody."""
    with clean_errors():
        from collabkit.recommend import Recommender  # lazy: torch loads only when the command runs

        if user is not None and (rate or about):
            raise CollabkitError(
                "give --user (a known user) or --rate/--about (a new user's ratings, side columns), not both"
            )
        if strength is not None and not rate:
            raise CollabkitError("--strength applies to a new user's --rate ratings only")
        if include_seen and user is None:
            raise CollabkitError("--include-seen applies to a known --user only")
        if popularity_penalty and user is None:
            raise CollabkitError(
                "--popularity-penalty applies to a known --user only (and to evaluate --ranking)"
            )
        rec = Recommender.load(model_dir)
        result: dict[str, Any] = {
            "model_dir": str(model_dir),
            "model": rec.trained.name,
            "min_count": min_count,
        }
        if user is not None:
            uid = rec.parse_user(user)
            recs = rec.recommend(uid, n, exclude_seen=not include_seen, min_count=min_count,
                                 popularity_penalty=popularity_penalty)  # fmt: skip
            result |= {"mode": "user", "user": uid}
            heading = f"top {len(recs)} for user {uid}" + (" (rated items included)" if include_seen else "")
        elif rate or about:
            ratings = _parse_ratings(rec, rate or [])
            stated = _parse_about(about or [])
            new = rec.fold_in(ratings, strength=strength, about=stated or None)
            recs = rec.recommend_for_ratings(new, n, min_count=min_count)
            result |= {
                "mode": "new_user",
                "ratings": [{"item": i, "title": rec.title(i), "rating": r} for i, r in ratings.items()],
                "about": stated,
                "ignored": new.ignored,
            }
            rated = "1 rating" if len(ratings) == 1 else f"{len(ratings)} ratings"
            heading = f"top {len(recs)} for a new user with {rated}"
            if stated:
                heading += " (" + ", ".join(f"{k} {v}" for k, v in stated.items()) + ")"
            if new.ignored:
                heading += f" ({len(new.ignored)} ignored: no training ratings)"
        else:
            recs = rec.popular(n, min_count=min_count)
            result |= {"mode": "popular"}
            heading = f"top {len(recs)} for an average user (no ratings given)"
        result["recommendations"] = recs.to_records()
        result["score_kind"] = recs.score_kind
        own = "rating" if recs.score_kind == "rating" else "model"  # the model's own, in the table
        if recs.model_scores is not None:  # the list was ordered by the penalised scores: say so
            what = "predicted rating" if recs.score_kind == "rating" else "ranking score"
            result["ordered_by"] = (
                f"score: the model's {what} lowered for popularity (popularity_penalty "
                f"{popularity_penalty:g}); model_score: the model's own {what}"
            )
        if as_json:
            emit(result, True)
        else:
            typer.echo(f"{heading}, among {_among(min_count)}")
            if recs.model_scores is not None:
                typer.echo(
                    f"ordered by score: the model's {what} lowered for popularity (--popularity-penalty "
                    f"{popularity_penalty:g}); {own}: the model's own {what}"
                )
                _print_rows(result["recommendations"], "score", own)
            else:
                _print_rows(result["recommendations"], "rating" if recs.score_kind == "rating" else "score")


@app.command()
def similar(
    model_dir: ModelDir,
    queries: Annotated[
        list[str],
        typer.Argument(help="Item ids or titles; several are combined (items like all of them)."),
    ],
    n: NOpt = 10,
    min_count: MinCount = MIN_COUNT,
    users: Annotated[
        bool, typer.Option("--users", help="The argument is a user id: list the most similar users.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Items (or, with --users, users) whose factors are nearest by cosine similarity."""
    with clean_errors():
        from collabkit.recommend import Recommender  # lazy: torch loads only when the command runs

        rec = Recommender.load(model_dir)
        result: dict[str, Any] = {
            "model_dir": str(model_dir),
            "model": rec.trained.name,
            "min_count": min_count,
        }
        if users:
            if len(queries) != 1:
                raise CollabkitError(f"--users takes exactly one user id, got {len(queries)}")
            uid = rec.parse_user(queries[0])
            near = rec.similar_users(uid, n, min_count=min_count)
            counts = rec.user_counts.numpy()
            rows = [
                {"rank": k + 1, "user": u, "score": float(s),
                 "n_ratings": int(counts[int(rec.users.encode([u], "error")[0])])}
                for k, (u, s) in enumerate(zip(near.users, near.scores, strict=True))
            ]  # fmt: skip
            result |= {"user": uid, "similar_users": rows}
            if as_json:
                emit(result, True)
            else:
                typer.echo(
                    f"{len(rows)} users most like user {uid} by cosine similarity, among users with "
                    f"at least {min_count} training rating{'' if min_count == 1 else 's'}"
                )
                typer.echo(f"{'rank':>4}  {'cosine':>6}  {'ratings':>7}  user")
                for r in rows:
                    typer.echo(f"{r['rank']:>4}  {r['score']:6.3f}  {r['n_ratings']:>7}  {r['user']}")
            return
        items = [rec.parse_item(q) for q in queries]
        recs = rec.similar_items(items, n, min_count=min_count)
        counts = rec.item_counts.numpy()

        def n_ratings(item: Any) -> int:
            return int(counts[int(rec.items.encode([item], "error")[0])])

        result |= {
            "items": [{"item": i, "title": rec.title(i), "n_ratings": n_ratings(i)} for i in items],
            "similar_items": [
                r | {"n_ratings": n_ratings(i)} for r, i in zip(recs.to_records(), recs.items, strict=True)
            ],
        }
        if as_json:
            emit(result, True)
        else:
            names = "; ".join(f"{rec.title(i)} ({_ratings(n_ratings(i))})" for i in items)
            typer.echo(f"{len(recs)} items most like {names} by cosine similarity, among {_among(min_count)}")
            _print_rows(result["similar_items"], "cosine", counts=True)


def _parse_ratings(rec: Any, pairs: list[str]) -> dict[Any, float]:
    """ITEM=RATING strings -> {raw item id: rating}; split on the last '=' (titles may hold one)."""
    ratings: dict[Any, float] = {}
    for text in pairs:
        name, sep, value = text.rpartition("=")
        if not sep or not name.strip():
            raise CollabkitError(f'--rate {text!r} must be ITEM=RATING, e.g. --rate "Star Wars (1977)=5"')
        try:
            rating = float(value)
        except ValueError:
            raise CollabkitError(f"--rate {text!r}: rating {value.strip()!r} is not a number") from None
        item = rec.parse_item(name)
        if item in ratings:
            raise CollabkitError(f"--rate: item {rec.title(item)!r} is rated twice")
        ratings[item] = rating
    return ratings


def _ratings(n: int) -> str:
    return f"{n:,} training rating{'' if n == 1 else 's'}"


def _among(min_count: int) -> str:
    """Which items could be answers, as the output states it (see `--min-count`)."""
    return f"items with at least {_ratings(min_count)}"


def _print_rows(
    rows: list[dict[str, Any]], score_name: str, model_name: str | None = None, *, counts: bool = False
) -> None:
    """The ranked rows as a table: rank, the score that ordered them, the model's own score (with a
    popularity penalty), each item's training ratings (for neighbours), item, title."""
    head = f"{'rank':>4}  {score_name:>6}"
    head += f"  {model_name:>6}" if model_name else ""
    head += f"  {'ratings':>7}" if counts else ""
    typer.echo(f"{head}  {'item':>8}  title")
    for r in rows:
        line = f"{r['rank']:>4}  {r['score']:6.3f}"
        line += f"  {r['model_score']:6.3f}" if model_name else ""
        line += f"  {r['n_ratings']:>7}" if counts else ""
        typer.echo(f"{line}  {r['item']!s:>8}  {r['title']}")


def _parse_about(pairs: list[str]) -> dict[str, str]:
    """--about COLUMN=VALUE strings -> {column: value}; a column given twice is refused."""
    out: dict[str, str] = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CollabkitError(f"--about {text!r} must be COLUMN=VALUE, e.g. --about age=25")
        if key.strip() in out:
            raise CollabkitError(f"--about: {key.strip()!r} is given twice")
        out[key.strip()] = value.strip()
    return out
