"""`collabkit tune`: search a model's settings with Optuna; and the `--config FILE` that train reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from collabkit.cli.app import (
    Cutoff,
    DataOpt,
    DuplicatesOpt,
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
    split_spec,
)
from collabkit.cli.core import FAMILIES_HELP, OptionOpt, RecipeOpt, _load, _parse_options
from collabkit.errors import CollabkitError


@app.command()
def tune(
    model: Annotated[str, typer.Option("--model", help=FAMILIES_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Folder for the study, best.json and the trials table.")],
    data: DataOpt = "ml-100k",
    trials: Annotated[
        int, typer.Option("--trials", help="Trials in the study (a resumed one runs until it has this many).")
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds after which no new trial starts.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the study in --out (same data, split and model).")
    ] = False,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="Search a setting over KEY=LOW:HIGH or KEY=A,B,C instead of its default range (repeat); "
            "e.g. --space n_factors=8:128 --space lr=1e-3:3e-2.",
        ),
    ] = None,
    option: OptionOpt = None,
    recipe: RecipeOpt = None,
    tune_pct: Annotated[
        float,
        typer.Option(
            "--tune-pct", help="Share of the split's training rows (seeded, random) that scores each trial."
        ),
    ] = 0.1,
    split: SplitOpt = "random",
    valid_pct: ValidPct = 0.2,
    seed: SeedOpt = 42,
    fold: FoldOpt = 0,
    k: KOpt = 5,
    last_n: LastN = 1,
    cutoff: Cutoff = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, or cuda:N.")] = "cpu",
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    duplicates: DuplicatesOpt = "error",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per trial.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search a model's settings with Optuna (TPE; pruning on the epoch table) on a validation part of
    the split's training rows, never its held-out rows; save the best as OUT/best.json, which
    `collabkit train --config OUT/best.json` trains. -o KEY=VALUE fixes a setting for every trial."""
    with clean_errors():
        # lazy: Optuna and the training stack load only for the command that uses them
        from collabkit.tuning import tune as run_tune

        spec = split_spec(split, valid_pct, seed, fold, k, last_n, cutoff)
        ranges = {}
        for text in space or []:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise CollabkitError(
                    f"--space {text!r} must be KEY=LOW:HIGH or KEY=A,B,C, e.g. n_factors=8:128"
                )
            ranges[key.strip()] = value
        log = None if quiet else (lambda s: typer.echo(s, err=as_json))
        table = _load(data, user_col, item_col, rating_col, timestamp_col, True, duplicates)
        reading: dict[str, Any] = {
            "user_col": user_col,
            "item_col": item_col,
            "rating_col": rating_col,
            "timestamp_col": timestamp_col,
            "duplicates": duplicates,
        }
        if Path(data).is_file():  # train --config finds it again from another folder
            reading["path"] = os.path.abspath(data)
        try:
            result = run_tune(
                table,
                model,
                out=out,
                split=spec,
                trials=trials,
                timeout=timeout,
                resume=resume,
                space=ranges,
                fixed=_parse_options(option or []),
                recipe=recipe,
                seed=seed,
                valid_pct=tune_pct,
                device=device,
                data_name=data,
                reading=reading,
                log=log,
            )
        except KeyboardInterrupt:
            typer.echo(
                f"collabkit: interrupted; the study in {out} keeps its finished trials: continue with "
                "the same command and --resume",
                err=True,
            )
            raise typer.Exit(130) from None
        if not as_json:
            c = result.counts
            typer.echo(
                f"best {result.objective} {result.best_value:.4f} (trial {result.best_trial}) of "
                f"{sum(c.values())} trials ({c['complete']} complete, {c['pruned']} pruned, "
                f"{c['failed']} failed) "
                f"in {result.seconds:.0f} s: "
                + ", ".join(f"{key} {_plain(v)}" for key, v in result.best_params.items())
            )
            typer.echo(
                f"saved to {out}/best.json; train it with: collabkit train --config {out}/best.json --out DIR"
            )
        emit(result.to_dict(), as_json)


def _plain(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
