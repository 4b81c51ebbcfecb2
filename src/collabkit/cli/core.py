"""`collabkit train | evaluate | crossval | predict`: each parses options and calls the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collabkit.cli.app import (
    Cutoff,
    DataOpt,
    FoldOpt,
    ItemCol,
    JsonOpt,
    KOpt,
    LastN,
    RatingCol,
    SeedOpt,
    SplitOpt,
    TimeCol,
    UserCol,
    ValidPct,
    app,
    clean_errors,
    emit,
)
from collabkit.errors import CollabkitError
from collabkit.train import distributed


def _load(data: str, user_col: str, item_col: str, rating_col: str, timestamp_col: str | None, quiet: bool):  # noqa: ANN202
    from collabkit.data import load_ratings

    table = load_ratings(
        data, user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col, progress=not quiet
    )
    return table


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Folder to save the trained model in.")],
    data: DataOpt = "ml-100k",
    model: Annotated[str, typer.Option("--model", help="dot | dotbias | nn | classifier")] = "dotbias",
    factors: Annotated[int, typer.Option("--factors", help="Latent factors (dot, dotbias).")] = 50,
    layers: Annotated[
        str, typer.Option("--layers", help="Hidden sizes, comma separated (nn, classifier).")
    ] = "100,50",
    epochs: Annotated[int | None, typer.Option("--epochs", help=RECIPE_HELP)] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate of the one-cycle schedule.")
    ] = None,
    wd: Annotated[float | None, typer.Option("--wd", help="Decoupled weight decay.")] = None,
    bs: Annotated[
        int | None, typer.Option("--bs", help="Batch size (none: the model's fast recipe).")
    ] = None,
    y_range: Annotated[tuple[float, float], typer.Option("--y-range", help="Output range LOW HIGH.")] = (
        0.0,
        5.5,
    ),
    split: SplitOpt = "random",
    valid_pct: ValidPct = 0.2,
    seed: SeedOpt = 42,
    fold: FoldOpt = 0,
    k: KOpt = 5,
    last_n: LastN = 1,
    cutoff: Cutoff = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, or cuda:N.")] = "cpu",
    step: Annotated[
        str, typer.Option("--step", help="auto | fused (dot models) | autograd: how each training step runs.")
    ] = "auto",
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No epoch table or progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on a split of the data, print the epoch table, and save it to --out."""
    with clean_errors():
        from collabkit.train.recipes import train_model

        log = None if quiet else (lambda s: typer.echo(s, err=as_json))
        result = train_model(
            data=_load(data, user_col, item_col, rating_col, timestamp_col, quiet or as_json),
            data_name=data,
            model=model,
            n_factors=factors,
            layers=_parse_layers(layers),
            epochs=epochs,
            lr=lr,
            wd=wd,
            bs=bs,
            y_range=y_range,
            split=split,
            valid_pct=valid_pct,
            seed=seed,
            split_kwargs={"fold": fold, "k": k, "last_n": last_n, "cutoff": cutoff},
            device=device,
            out=out,
            log=log,
            step=step,
        )
        main = distributed.is_main()  # only rank 0 reports when torchrun starts several
        distributed.shutdown()
        if main:
            if not as_json and not quiet:
                typer.echo(
                    f"saved {result['model']} model to {result['out']} "
                    f"(validation MSE {result['valid']['mse']:.4f})"
                )
            emit(result, as_json)


RECIPE_HELP = (
    "Epochs. Unset settings come from the model's fast recipe when --bs is not given, "
    "else from the chapter (5 epochs, lr 5e-3, wd 0.1)."
)


def _parse_layers(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CollabkitError(f"--layers must be comma-separated integers like 100,50; got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise CollabkitError(f"--layers must list positive sizes like 100,50; got {text!r}")
    return sizes


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    data: DataOpt = "ml-100k",
    split: SplitOpt = "random",
    valid_pct: ValidPct = 0.2,
    seed: SeedOpt = 42,
    fold: FoldOpt = 0,
    k: KOpt = 5,
    last_n: LastN = 1,
    cutoff: Cutoff = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    ranking: Annotated[
        bool,
        typer.Option(
            "--ranking",
            help="Also rank every unrated item for each held-out user: precision, recall, NDCG, MAP, "
            "hit rate at k and coverage (relevant: held-out rating >= --relevant).",
        ),
    ] = False,
    top_k: Annotated[
        int, typer.Option("--top-k", help="List length for --ranking (--k is the number of folds).")
    ] = 10,
    relevant: Annotated[
        float, typer.Option("--relevant", help="Held-out rating that counts as relevant, with --ranking.")
    ] = 4.0,
    as_json: JsonOpt = False,
) -> None:
    """Rating error (MSE, RMSE, MAE; classifier accuracy) of a saved model on a split's held-out rows.

    With --ranking, also the top-k ranking quality, with the model's saved training rows as what
    each user has seen and the split's held-out rows as the test.
    """
    with clean_errors():
        from collabkit.train.recipes import evaluate_saved

        table = _load(data, user_col, item_col, rating_col, timestamp_col, True)
        split_kwargs = {"fold": fold, "k": k, "last_n": last_n, "cutoff": cutoff}
        result = evaluate_saved(
            model_dir, table, split, valid_pct=valid_pct, seed=seed, split_kwargs=split_kwargs,
            ranking_k=top_k if ranking else None, relevant_threshold=relevant,
        )  # fmt: skip
        if not as_json:
            typer.echo("  ".join(f"{key} {val:.4f}" for key, val in result["metrics"].items()))
            if result["unknown"]:
                typer.echo(f"{result['unknown']} held-out rows have a user or item the model never saw")
            if ranking:
                rk = result["ranking"]
                users, top = rk["users"], rk["k"]
                typer.echo("  ".join(f"{key} {val:.4f}" for key, val in rk["metrics"].items()))
                typer.echo(
                    f"over {users['counted']} users with a held-out rating >= {rk['relevant_threshold']:g} "
                    f"({users['no_relevant']} without one and {users['cold']} with no training ratings "
                    f"skipped); {rk['candidate_items']} candidate items; a random order scores "
                    f"precision@{top} {rk[f'random_precision@{top}']:.4f}"
                )
        emit(result, as_json)


@app.command()
def crossval(
    data: DataOpt = "ml-100k",
    model: Annotated[str, typer.Option("--model")] = "dotbias",
    folds: Annotated[
        str,
        typer.Option("--folds", help="'kfold' (with --k) or a list of named splits such as u1,u2,u3,u4,u5."),
    ] = "kfold",
    k: KOpt = 5,
    factors: Annotated[int, typer.Option("--factors")] = 50,
    layers: Annotated[str, typer.Option("--layers")] = "100,50",
    epochs: Annotated[int | None, typer.Option("--epochs", help=RECIPE_HELP)] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    wd: Annotated[float | None, typer.Option("--wd")] = None,
    bs: Annotated[int | None, typer.Option("--bs")] = None,
    y_range: Annotated[tuple[float, float], typer.Option("--y-range")] = (0.0, 5.5),
    seed: SeedOpt = 42,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and evaluate on each fold; report every fold and the mean and standard deviation."""
    with clean_errors():
        from collabkit.evaluate import summarize_folds
        from collabkit.train.recipes import train_model

        table = _load(data, user_col, item_col, rating_col, timestamp_col, True)
        plan = (
            [("kfold", {"fold": i, "k": k}) for i in range(k)]
            if folds == "kfold"
            else [(name.strip(), {}) for name in folds.split(",") if name.strip()]
        )
        results = []
        for name, kw in plan:
            res = train_model(
                data=table,
                data_name=data,
                model=model,
                n_factors=factors,
                layers=_parse_layers(layers),
                epochs=epochs,
                lr=lr,
                wd=wd,
                bs=bs,
                y_range=y_range,
                split=name,
                valid_pct=0.2,
                seed=seed,
                split_kwargs=kw,
                device="cpu",
                out=None,
                log=None,
            )
            label = f"{name}{kw.get('fold', '') if name == 'kfold' else ''}"
            results.append({"fold": label, **res["valid"]})
            if not as_json:
                typer.echo(
                    f"{label:<8}" + "  ".join(f"{m} {v:.4f}" for m, v in res["valid"].items() if m != "n")
                )
        summary = summarize_folds([{k_: v for k_, v in r.items() if k_ != "fold"} for r in results])
        if not as_json:
            typer.echo(
                "mean    " + "  ".join(f"{m} {s['mean']:.4f} ± {s['std']:.4f}" for m, s in summary.items())
            )
        emit({"model": model, "folds": results, "summary": summary}, as_json)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    user: Annotated[list[str], typer.Option("--user", help="Raw user id (repeat, paired with --item).")],
    item: Annotated[list[str], typer.Option("--item", help="Raw item id or title (repeat).")],
    as_json: JsonOpt = False,
) -> None:
    """Predicted ratings for (user, item) pairs given as raw ids."""
    with clean_errors():
        from collabkit.recommend import Recommender

        if len(user) != len(item):
            raise CollabkitError(f"give as many --user as --item options ({len(user)} vs {len(item)})")
        rec = Recommender.load(model_dir)
        users = [rec.parse_user(u) for u in user]
        items = [rec.parse_item(i) for i in item]
        preds = rec.predict(users=users, items=items)
        rows = [
            {"user": u, "item": i, "rating": float(p)} for u, i, p in zip(users, items, preds, strict=True)
        ]
        if as_json:
            emit({"predictions": rows}, True)
        else:
            for r in rows:
                typer.echo(f"{r['user']}\t{r['item']}\t{r['rating']:.3f}")
