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

        if user is not None and rate:
            raise CollabkitError("give --user (a known user) or --rate (a new user's ratings), not both")
        if strength is not None and not rate:
            raise CollabkitError("--strength applies to a new user's --rate ratings only")
        if include_seen and user is None:
            raise CollabkitError("--include-seen applies to a known --user only")
        if popularity_penalty and user is None:
            raise CollabkitError(
                "--popularity-penalty applies to a known --user only (and to evaluate --ranking)"
            )
        rec = Recommender.load(model_dir)
        result: dict[str, Any] = {"model_dir": str(model_dir), "model": rec.trained.name}
        if user is not None:
            uid = rec.parse_user(user)
            recs = rec.recommend(uid, n, exclude_seen=not include_seen, min_count=min_count,
                                 popularity_penalty=popularity_penalty)  # fmt: skip
            result |= {"mode": "user", "user": uid}
            heading = f"top {len(recs)} for user {uid}" + (" (rated items included)" if include_seen else "")
        elif rate:
            ratings = _parse_ratings(rec, rate)
            new = rec.fold_in(ratings, strength=strength)
            recs = rec.recommend_for_ratings(new, n, min_count=min_count)
            result |= {
                "mode": "new_user",
                "ratings": [{"item": i, "title": rec.title(i), "rating": r} for i, r in ratings.items()],
                "ignored": new.ignored,
            }
            rated = "1 rating" if len(ratings) == 1 else f"{len(ratings)} ratings"
            heading = f"top {len(recs)} for a new user with {rated}"
            if new.ignored:
                heading += f" ({len(new.ignored)} ignored: no training ratings)"
        else:
            recs = rec.popular(n, min_count=min_count)
            result |= {"mode": "popular"}
            heading = f"top {len(recs)} for an average user (no ratings given)"
        result["recommendations"] = recs.to_records()
        result["score_kind"] = recs.score_kind
        if as_json:
            emit(result, True)
        else:
            typer.echo(heading)
            _print_rows(result["recommendations"], recs.score_kind)


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
        result: dict[str, Any] = {"model_dir": str(model_dir), "model": rec.trained.name}
        if users:
            if len(queries) != 1:
                raise CollabkitError(f"--users takes exactly one user id, got {len(queries)}")
            uid = rec.parse_user(queries[0])
            near = rec.similar_users(uid, n, min_count=min_count)
            rows = [
                {"rank": k + 1, "user": u, "score": float(s)}
                for k, (u, s) in enumerate(zip(near.users, near.scores, strict=True))
            ]
            result |= {"user": uid, "similar_users": rows}
            if as_json:
                emit(result, True)
            else:
                typer.echo(f"{len(rows)} users most like user {uid} (cosine similarity)")
                for r in rows:
                    typer.echo(f"{r['rank']:>3}  {r['score']:6.3f}  {r['user']}")
            return
        items = [rec.parse_item(q) for q in queries]
        recs = rec.similar_items(items, n, min_count=min_count)
        result |= {
            "items": [{"item": i, "title": rec.title(i)} for i in items],
            "similar_items": recs.to_records(),
        }
        if as_json:
            emit(result, True)
        else:
            names = "; ".join(rec.title(i) for i in items)
            typer.echo(f"{len(recs)} items most like {names} (cosine similarity)")
            _print_rows(result["similar_items"], "cosine")


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


def _print_rows(rows: list[dict[str, Any]], score_name: str) -> None:
    typer.echo(f"{'rank':>4}  {score_name:>6}  {'item':>8}  title")
    for r in rows:
        typer.echo(f"{r['rank']:>4}  {r['score']:6.3f}  {r['item']!s:>8}  {r['title']}")
