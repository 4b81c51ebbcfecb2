"""`collabkit train | evaluate | crossval | predict`: each parses options and calls `collabkit.workflows`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, NamedTuple, cast

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
from collabkit.cli.config_file import CROSSVAL_CONFIG_KEYS, TRAIN_CONFIG_KEYS, config_values
from collabkit.defaults import BUILT_IN_FAMILIES, MIN_COUNT
from collabkit.errors import CollabkitError


def _load(
    data: str,
    user_col: str,
    item_col: str,
    rating_col: str,
    timestamp_col: str | None,
    quiet: bool,
    duplicates: str = "error",
) -> Any:
    """The table, read with the duplicates rule; says on stderr how many repeated rows it dropped."""
    # lazy: the training stack loads only for the commands that use it
    from collabkit.data import load_ratings

    if duplicates not in ("error", "last", "mean"):
        raise CollabkitError(f"--duplicates {duplicates!r}; expected one of: error, last, mean")
    table = load_ratings(
        data, user=user_col, item=item_col, rating=rating_col, timestamp=timestamp_col, progress=not quiet,
        duplicates=cast(Any, duplicates),
    )  # fmt: skip
    table.attrs.setdefault("name", data)
    dropped = int(table.attrs.get("duplicates_dropped", 0))
    if dropped:
        how = "the latest rating kept" if duplicates == "last" else "their ratings averaged"
        rows = "1 row repeating" if dropped == 1 else f"{dropped:,} rows repeating"
        typer.echo(f"{rows} a (user, item) pair dropped (--duplicates {duplicates}: {how})", err=True)
    return table


FAMILIES_HELP = " | ".join(BUILT_IN_FAMILIES) + " (or a family you registered; see `collabkit models`)"
ModelOpt = Annotated[str, typer.Option("--model", help=FAMILIES_HELP)]
RecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="Families trained by one-cycle epochs (dot, dotbias, nn, classifier, hybrid): where unset "
        "--bs/--epochs/--lr/--wd come from: fast (collabkit's tuned settings; bias model: bs 768, "
        "6 epochs, lr 5e-3, wd 0.1) or chapter (bs 64, 5 epochs, lr 5e-3, wd 0.1). Default: fast.",
    ),
]
FactorsOpt = Annotated[
    int | None,
    typer.Option("--factors", help="Latent factors (the n_factors setting); default: the family's."),
]
LayersOpt = Annotated[
    str | None,
    typer.Option("--layers", help="Hidden sizes, comma separated (nn, classifier); default: 100,50."),
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs; default: the recipe's.")]
LrOpt = Annotated[
    float | None, typer.Option("--lr", help="Peak one-cycle learning rate; default: the recipe's.")
]
WdOpt = Annotated[float | None, typer.Option("--wd", help="Decoupled weight decay; default: the recipe's.")]
BsOpt = Annotated[int | None, typer.Option("--bs", help="Batch size; default: the recipe's.")]
YRangeOpt = Annotated[
    tuple[float, float] | None,
    typer.Option(
        "--y-range", help="Output range LOW HIGH; default: from the data (0 to 1.1 x the top rating)."
    ),
]


def _config(model: str, recipe: str | None, factors: int | None, layers: str | None, epochs: int | None,
            lr: float | None, wd: float | None, bs: int | None, y_range: tuple[float, float] | None,
            split: Any, seed: int, device: str = "cpu", step: str = "auto",
            options: list[str] | None = None) -> Any:  # fmt: skip
    """The TrainConfig of the command's options, checked against the family before any data is read:
    an option the family does not take is refused with the settings it does take."""
    # lazy: the training stack loads only for the commands that use it
    from collabkit.models import family
    from collabkit.workflows import TrainConfig

    fam = family(model)
    settings = _parse_options(options or [])
    named = {"--factors": ("n_factors", factors), "--y-range": ("y_range", y_range),
             "--layers": ("layers", None if layers is None else _parse_layers(layers))}  # fmt: skip
    for flag, (key, value) in named.items():
        if value is None:
            continue
        if key not in fam.Settings.model_fields:
            raise CollabkitError(
                f"{model} takes no {flag}; its settings are: {fam.Settings.help_line()} "
                "(give them as -o KEY=VALUE)"
            )
        if key in settings:
            raise CollabkitError(f"{flag} and -o {key}=... both given; give one")
        settings[key] = value
    config = TrainConfig(
        model=model, recipe=recipe, bs=bs, epochs=epochs, lr=lr, wd=wd, settings=settings, split=split,
        seed=seed, device=device, step=step,
    )  # fmt: skip
    config.check()
    return config


OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="A setting of the family as KEY=VALUE (repeat), e.g. -o l2=500; unknown keys are refused.",
    ),
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A configuration file (OUT/best.json of collabkit tune): its model, settings, data and split, "
        "where not typed here (what is typed wins). Refused on held-out rows it was tuned on.",
    ),
]


def tuned_line(config: Any, table: Any, specs: list[Any]) -> str:
    """What a configuration file's settings were tuned on, for each split; an error where tuning
    read held-out rows of one (settings chosen on u1.base are not scored on u2..u5)."""
    # lazy: Optuna and the training stack load only for the commands that use them
    from collabkit.tuning import check_tuned_rows

    lines = [check_tuned_rows(config, table, spec) for spec in specs]
    return lines[0] if len(lines) == 1 else f"{lines[0]} (each of the {len(specs)} folds checked)"


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> {key: number, true/false or text}."""
    import json

    out: dict[str, Any] = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise CollabkitError(f"--option {text!r} must be KEY=VALUE, e.g. -o l2=500")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@app.command()
def train(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to save the trained model in.")] = None,
    data: DataOpt = "ml-100k",
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="rating (how many stars: dotbias) or ranking (what to watch next: easeknn); "
            "picks the model when --model is not given.",
        ),
    ] = "rating",
    model: Annotated[str | None, typer.Option("--model", help=FAMILIES_HELP + "; default: by --task")] = None,
    recipe: RecipeOpt = None,
    factors: FactorsOpt = None,
    layers: LayersOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    wd: WdOpt = None,
    bs: BsOpt = None,
    y_range: YRangeOpt = None,
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
    option: OptionOpt = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    duplicates: DuplicatesOpt = "error",
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            "--checkpoint-every",
            help="Write a checkpoint into OUT/checkpoints every N epochs (and on Ctrl-C); default: none.",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the run whose checkpoints are in RUN_DIR (its --out), with "
            "the same data and settings.",
        ),
    ] = None,
    config_file: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No epoch table or progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on a split of the data, print its settings and epoch table, and save it to --out."""
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.models import family as family_of
        from collabkit.workflows import model_for_task
        from collabkit.workflows import resume as resume_run
        from collabkit.workflows import train as run_train

        log = None if quiet else (lambda s: typer.echo(s, err=as_json))
        tuned = None
        if config_file is not None:
            if resume is not None:
                raise CollabkitError("--config and --resume: a resumed run keeps its own settings; give one")
            found, tuned, note = config_values(ctx, config_file, TRAIN_CONFIG_KEYS)
            v = {**ctx.params, **found}
            data, task, model, recipe, factors, layers = (
                v[n] for n in ("data", "task", "model", "recipe", "factors", "layers")
            )
            epochs, lr, wd, bs, y_range, option = (
                v[n] for n in ("epochs", "lr", "wd", "bs", "y_range", "option")
            )
            split, valid_pct, seed, fold, k, last_n, cutoff = (
                v[n] for n in ("split", "valid_pct", "seed", "fold", "k", "last_n", "cutoff")
            )
            device, step, duplicates = v["device"], v["step"], v["duplicates"]
            user_col, item_col, rating_col, timestamp_col = (
                v[n] for n in ("user_col", "item_col", "rating_col", "timestamp_col")
            )
            if note:
                typer.echo(note, err=as_json)
        try:
            if resume is not None:
                given = _given_options(ctx, keep=("resume", "out", "quiet", "as_json"))
                if given:
                    raise CollabkitError(
                        f"--resume continues the run with its own data and settings; drop {', '.join(given)} "
                        "(they would be ignored)"
                    )
                if out is not None and out != resume:
                    raise CollabkitError(
                        "--resume continues the run in RUN_DIR and saves there; leave --out out"
                    )
                out = resume
                result = resume_run(resume, log=log, progress=not (quiet or as_json))
            else:
                if out is None:
                    raise CollabkitError("give --out, the folder to save the model in (or --resume RUN_DIR)")
                model = model or model_for_task(task)
                spec = split_spec(split, valid_pct, seed, fold, k, last_n, cutoff)
                config = _config(
                    model,
                    recipe,
                    factors,
                    layers,
                    epochs,
                    lr,
                    wd,
                    bs,
                    y_range,
                    spec,
                    seed,
                    device,
                    step,
                    option,
                )  # checked before any data is read
                table = _load(
                    data, user_col, item_col, rating_col, timestamp_col, quiet or as_json, duplicates
                )
                if tuned is not None:  # refused if tuning read any of this split's held-out rows
                    typer.echo(tuned_line(tuned, table, [spec]), err=as_json)
                reading = {
                    "user_col": user_col,
                    "item_col": item_col,
                    "rating_col": rating_col,
                    "timestamp_col": timestamp_col,
                    "duplicates": duplicates,
                }
                if Path(data).is_file():  # found again from another folder; the name stays as typed
                    reading["path"] = os.path.abspath(data)
                run_info = {**reading, "checkpoint_every": checkpoint_every}  # fmt: skip
                ranks = family_of(config.model).score_kind == "score"  # its figures are top-10's
                result = run_train(
                    table, config, data_name=data, out=out, log=log, checkpoint_every=checkpoint_every,
                    run_info=run_info, reading=reading, ranking_k=10 if ranks else None,
                )  # fmt: skip
        except KeyboardInterrupt:
            if not (checkpoint_every or resume):
                raise
            typer.echo(f"collabkit: interrupted; a checkpoint is in {out}/checkpoints: continue with "
                       f"`collabkit train --resume {out}`", err=True)  # fmt: skip
            raise typer.Exit(130) from None
        from collabkit.train import distributed  # lazy: torch loads only for the commands that use it

        main = distributed.is_main()  # only rank 0 reports when torchrun starts several
        distributed.shutdown()
        if main:
            if not as_json and not quiet:
                figures = ", ".join(f"{m} {v:.4f}" for m, v in result.valid.items() if m in ("mse", "rmse"))
                fallback = result.valid.get("fallback")
                if fallback:
                    figures += (
                        f"; {fallback} rows with no training ratings scored by the biases-only baseline"
                    )
                rk = result.ranking
                if not figures and rk is not None:
                    figures = "  ".join(f"{m} {rk['metrics'][m]:.4f}" for m in ("ndcg@10", "precision@10"))
                    figures += f" (min_count {rk['min_count']}; more: evaluate --ranking)"
                if not figures and "note" in result.valid:
                    figures = f"no rating error: {result.valid['note']}; see evaluate --ranking"
                typer.echo(f"saved {result.model} model to {result.out} (held-out {figures or 'none'})")
                for line in baseline_lines(result.valid) + (ranking_baseline_lines(rk) if rk else []):
                    typer.echo(line)
            emit(result.to_dict(), as_json)


@app.command("lr-find")
def lr_find(
    data: DataOpt = "ml-100k",
    model: ModelOpt = "dotbias",
    recipe: RecipeOpt = None,
    bs: BsOpt = None,
    wd: WdOpt = None,
    factors: FactorsOpt = None,
    layers: LayersOpt = None,
    y_range: YRangeOpt = None,
    option: OptionOpt = None,
    split: SplitOpt = "random",
    valid_pct: ValidPct = 0.2,
    seed: SeedOpt = 42,
    num_it: Annotated[int, typer.Option("--num-it", help="Batches in the sweep.")] = 100,
    plot: Annotated[
        Path, typer.Option("--plot", help="Where to write the loss-against-rate plot (PNG).")
    ] = Path("lr_find.png"),
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    duplicates: DuplicatesOpt = "error",
    as_json: JsonOpt = False,
) -> None:
    """fastai's learning-rate finder: sweep the rate from 1e-7 to 10 and suggest one (valley)."""
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.workflows import check_lr_find, find_lr

        if plot.suffix.lower() != ".png":
            raise CollabkitError(f"--plot must name a .png file, got {plot}")
        if plot.is_dir():
            raise CollabkitError(f"--plot {plot} is a folder; name a .png file")
        check_lr_find(model)  # first: a family with no learning rate needs no word on its settings
        spec = split_spec(split, valid_pct, seed)
        config = _config(
            model, recipe, factors, layers, None, None, wd, bs, y_range, spec, seed, options=option
        )
        table = _load(data, user_col, item_col, rating_col, timestamp_col, True, duplicates)
        result = find_lr(table, config, plot_path=plot, num_it=num_it)
        if not as_json:
            s = result["suggestions"]
            typer.echo(
                f"{model} at bs {result['bs']}: valley {s['valley']:.2e} (suggested), "
                f"slide {s['slide']:.2e}, minimum {s['minimum']:.2e}, steep {s['steep']:.2e}"
            )
            typer.echo(f"plot written to {plot}")
        emit(result, as_json)


def _given_options(ctx: typer.Context, keep: tuple[str, ...]) -> list[str]:
    """The options typed on the command line, other than `keep`, as the user spelled them."""
    names = {p.name: p.opts[0] for p in ctx.command.params if p.opts}
    given = []
    for key in ctx.params:
        source = ctx.get_parameter_source(key)  # typer's click enum: compared by name
        if key not in keep and source is not None and source.name == "COMMANDLINE":
            given.append(names.get(key, key))
    return given


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
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A MovieLens name or a CSV/TSV/Parquet path; default: the table the model was trained on, "
            "read as it was (its columns and duplicates rule are recorded in the model folder).",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Default: the model's own split. Or random | u1..u5 | ua | ub | kfold | last | time.",
        ),
    ] = None,
    valid_pct: ValidPct = 0.2,
    seed: SeedOpt = 42,
    fold: FoldOpt = 0,
    k: KOpt = 5,
    last_n: LastN = 1,
    cutoff: Cutoff = None,
    allow_overlap: Annotated[
        bool,
        typer.Option(
            "--allow-overlap",
            help="Score a --split whose held-out rows were trained on (counted in the result).",
        ),
    ] = False,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    duplicates: DuplicatesOpt = "error",
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
    popularity_penalty: Annotated[
        float,
        typer.Option(
            "--popularity-penalty",
            help="With --ranking: trade accuracy for coverage (0: none; see Recommender.recommend_many).",
        ),
    ] = 0.0,
    min_count: Annotated[
        int,
        typer.Option(
            "--min-count",
            help="With --ranking: rank only items with at least this many training ratings; default 10, "
            "as recommend serves, so the lists scored are the lists shown; 1 for every trained item.",
        ),
    ] = MIN_COUNT,
    as_json: JsonOpt = False,
) -> None:
    """Rating error (MSE, RMSE, MAE; classifier accuracy) of a saved model on held-out rows.

    Without --split, the held-out rows are the model's own (it records its split and its table).
    A --split whose held-out rows were trained on is refused unless --allow-overlap is given.
    """
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.persist import load_model
        from collabkit.workflows import evaluate_saved

        spec = None if split is None else split_spec(split, valid_pct, seed, fold, k, last_n, cutoff)
        trained = load_model(model_dir)  # once: it says which table to read, then it is scored
        cols = Reading(user_col, item_col, rating_col, timestamp_col, duplicates)
        if data is None:
            data, cols = read_as_recorded(model_dir, trained, cols, set(_given_options(ctx, keep=())))
            if not as_json:
                typer.echo(recorded_line(data, model_dir))
        table = _load(data, *cols[:4], True, cols.duplicates)
        result = evaluate_saved(
            model_dir, table, spec, allow_overlap=allow_overlap,
            ranking_k=top_k if ranking else None, relevant_threshold=relevant,
            popularity_penalty=popularity_penalty, trained=trained, min_count=min_count,
        )  # fmt: skip
        if not as_json:
            typer.echo(f"split {result.split}: {result.n:,} held-out rows")
            hidden = ("n", "note", "baselines", "beats_biases", "beats_mean")
            line = "  ".join(_fmt(k, v) for k, v in result.metrics.items() if k not in hidden)
            if line:
                typer.echo(line)
            for extra in baseline_lines(result.metrics):
                typer.echo(extra)
            if result.metrics.get("fallback"):
                typer.echo(f"{result.metrics['fallback']} rows have a user or item with no training ratings: "
                           "scored by the biases-only baseline")  # fmt: skip
            for note in result.notes + ([result.metrics["note"]] if "note" in result.metrics else []):
                typer.echo(f"note: {note}")
            if result.ranking is not None:
                rk = result.ranking
                users, top = rk["users"], rk["k"]
                typer.echo("  ".join(f"{key} {val:.4f}" for key, val in rk["metrics"].items()))
                typer.echo(
                    f"over {users['counted']} users with a held-out rating >= {rk['relevant_threshold']:g} "
                    f"({users['no_relevant']} without one and {users['cold']} with no training ratings "
                    f"skipped); {rk['candidate_items']} candidate items "
                    f"({_candidates_text(rk['min_count'])}); a random order scores "
                    f"precision@{top} {rk[f'random_precision@{top}']:.4f}"
                )
                for line in ranking_baseline_lines(rk):
                    typer.echo(line)
                if "note" in rk:
                    typer.echo(f"note: {rk['note']}")
        emit(result.to_dict(), as_json)


def ranking_baseline_lines(ranking: dict[str, Any]) -> list[str]:
    """The most-rated list beside a ranking evaluation, and a flag when the model does not beat it."""
    base = ranking.get("baseline")
    if not base:
        return []
    k = ranking["k"]
    shown = ("ndcg", "precision", "recall")
    lines = [
        "baseline on the same users and candidates, the most-rated list: "
        + "  ".join(f"{m}@{k} {base['metrics'][f'{m}@{k}']:.4f}" for m in shown)
    ]
    if not ranking.get("beats_popular", True):
        lines.append(
            "note: this model does not beat the most-rated list on NDCG: it ranks no better than a count "
            "of ratings (try another family, or its tuned settings: see collabkit models NAME)"
        )
    return lines


def baseline_lines(figures: dict[str, Any]) -> list[str]:
    """The baselines beside a held-out RMSE, and a flag when the model does not beat biases only."""
    base = figures.get("baselines")
    if not base or "rmse" not in figures:
        return []
    lines = [
        f"baselines on the same rows: rmse {base['global_mean']['rmse']:.4f} predicting the training mean, "
        f"{base['biases']['rmse']:.4f} with user and item biases only"
    ]
    if not figures.get("beats_mean", True):
        lines.append(
            "note: this model does not beat predicting the training mean: on these rows it has learned "
            "nothing about who likes what (the table may hold no signal, or too few ratings per user)"
        )
    if not figures.get("beats_biases", True):
        lines.append(
            "note: this model does not beat the biases-only baseline: it is underfitted (try --recipe "
            "chapter or more --epochs) or the table holds little beyond who rates high and what is liked"
        )
    return lines


def recorded_data(model_dir: Path, trained: Any) -> tuple[str, dict[str, Any]]:
    """The table a loaded model folder says it was trained on, and how it was read; an error if none."""
    data = trained.data
    if data is None or data.name in ("table", ""):
        raise CollabkitError(
            f"{model_dir} does not record a table it could be read from again (it was trained on rows "
            "given directly); give --data"
        )
    name, path = data.name, data.reading.get("path")
    if path and Path(path).is_file():  # the file it read, from whatever folder the command runs in
        name = str(path)
    return name, dict(data.reading)


def _candidates_text(min_count: int) -> str:
    """Which items a ranked list could hold, and the `recommend` that serves the same lists."""
    served = (
        "as recommend serves by default"
        if min_count == MIN_COUNT
        else f"as recommend --min-count {min_count}"
    )
    rated = f"{min_count:,} training rating{'' if min_count == 1 else 's'}"
    return f"min_count {min_count}: items with at least {rated}, {served}"


class Reading(NamedTuple):
    """How a table is read: its column names and the duplicates rule (as `train` records them)."""

    user_col: str
    item_col: str
    rating_col: str
    timestamp_col: str | None
    duplicates: str


READING_FLAGS = {"user_col": "--user-col", "item_col": "--item-col", "rating_col": "--rating-col",
                 "timestamp_col": "--timestamp-col", "duplicates": "--duplicates"}  # fmt: skip


def read_as_recorded(model_dir: Path, trained: Any, cols: Reading, given: set[str]) -> tuple[str, Reading]:
    """The table a model folder records and how it was read; a reading option typed now wins."""
    data, reading = recorded_data(model_dir, trained)
    recorded: dict[str, Any] = {
        key: value if READING_FLAGS[key] in given else reading.get(key, value)
        for key, value in cols._asdict().items()
    }
    return data, Reading(**recorded)


def recorded_line(data: str, model_dir: Path) -> str:
    """The line a command prints when it reads the table a model folder records (no --data given)."""
    return f"data: {data}, the table the model was trained on (recorded in {model_dir})"


class TrainOptions(NamedTuple):
    """A training command's model options, as typed (None: not given)."""

    model: str | None
    recipe: str | None
    factors: int | None
    layers: str | None
    epochs: int | None
    lr: float | None
    wd: float | None
    bs: int | None
    y_range: tuple[float, float] | None
    options: list[str]
    seed: int


def _train_as_recorded(
    model_dir: Path, trained: Any, opts: TrainOptions, seed_given: bool
) -> tuple[TrainOptions, str]:
    """`opts` completed with how the folder's model was trained, and a line that says so.

    Only what was given at training is carried (the family, recipe, given fields and settings,
    the seed): what a recipe or the data supplied is worked out again, as training did. An option
    typed now wins; another --model takes none of the folder's settings.
    """
    own = _recorded_training(model_dir, trained)
    if opts.model is not None and opts.model != own["model"]:
        return (
            opts,
            f"model: {opts.model}, as given ({model_dir} holds a {own['model']} model: its settings unused)",
        )
    fields = own["fields"]
    named = {"n_factors": opts.factors, "layers": opts.layers, "y_range": opts.y_range}
    typed = {key for key, value in named.items() if value is not None} | set(_parse_options(opts.options))
    kept = {key: v for key, v in own["settings"].items() if key not in typed}
    merged = opts._replace(
        model=own["model"],
        recipe=opts.recipe if opts.recipe is not None else own["recipe"],
        epochs=opts.epochs if opts.epochs is not None else fields.get("epochs"),
        lr=opts.lr if opts.lr is not None else fields.get("lr"),
        wd=opts.wd if opts.wd is not None else fields.get("wd"),
        bs=opts.bs if opts.bs is not None else fields.get("bs"),
        options=[*opts.options, *(f"{key}={json.dumps(v)}" for key, v in kept.items())],
        seed=opts.seed if seed_given else own["seed"],
    )
    shown = ", ".join(f"{key} {_plain_value(v)}" for key, v in {**fields, **own["settings"]}.items())
    line = (f"model: {own['model']}, trained with {shown or 'its defaults'} and seed {own['seed']} "
            f"(recorded in {model_dir}); options given here win")  # fmt: skip
    return merged, line


def _recorded_training(model_dir: Path, trained: Any) -> dict[str, Any]:
    """How a loaded model folder's model was trained, as a command would give it again: its family,
    recipe, the recipe fields and family settings that were given (not those a recipe or the data
    supplied, which a new run works out again), and its seed."""
    results = trained.results or {}
    settings, sources = results.get("settings") or {}, results.get("sources") or {}
    if not settings:
        raise CollabkitError(
            f"{model_dir} does not record its training settings (an older collabkit); give --model and "
            "its settings"
        )
    chosen = {key: settings[key] for key, src in sources.items() if src == "given" and key in settings}
    return {
        "model": str(results.get("model") or trained.name),
        "recipe": results.get("recipe"),
        "fields": {key: v for key, v in chosen.items() if key in ("bs", "epochs", "lr", "wd")},
        "settings": {key: v for key, v in chosen.items() if key not in ("bs", "epochs", "lr", "wd")},
        "seed": int(settings.get("seed", 42)),
    }


def _plain_value(v: Any) -> str:
    """A setting as a person types it: 8, 0.005, [100, 50]."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _fmt(key: str, val: Any) -> str:
    return f"{key} {val:.4f}" if isinstance(val, float) else f"{key} {val}"


@app.command()
def crossval(
    ctx: typer.Context,
    model_dir: Annotated[
        Path | None,
        typer.Argument(
            help="A model folder written by `collabkit train`: cross-validate its family and the settings "
            "it was given, on the table it was trained on, read as it was (options given here win).",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A MovieLens name or a CSV/TSV/Parquet path; default: MODEL_DIR's table, read as it was "
            "(its columns and duplicates rule are recorded there), or ml-100k with no MODEL_DIR.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help=FAMILIES_HELP + "; default: MODEL_DIR's, or dotbias")
    ] = None,
    folds: Annotated[
        str,
        typer.Option("--folds", help="'kfold' (with --k) or a list of named splits such as u1,u2,u3,u4,u5."),
    ] = "kfold",
    k: KOpt = 5,
    recipe: RecipeOpt = None,
    factors: FactorsOpt = None,
    layers: LayersOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    wd: WdOpt = None,
    bs: BsOpt = None,
    y_range: YRangeOpt = None,
    option: OptionOpt = None,
    seed: SeedOpt = 42,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    timestamp_col: TimeCol = None,
    duplicates: DuplicatesOpt = "error",
    ranking: Annotated[
        bool,
        typer.Option("--ranking", help="Also precision, recall, NDCG, MAP and hit rate at --top-k per fold."),
    ] = False,
    top_k: Annotated[int, typer.Option("--top-k", help="List length for --ranking.")] = 10,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and evaluate on each fold; report every fold and the mean and standard deviation.

    With MODEL_DIR, the folds train what that folder's model was trained as (its family, the settings
    given to it, its seed) on the table it was trained on; an option given here replaces its own.
    """
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.workflows import TrainResult, cross_validate

        said: list[str] = []  # what came from MODEL_DIR or a default, said before the folds
        tuned = None
        if config_file is not None:
            if model_dir is not None:
                raise CollabkitError("give MODEL_DIR or --config, not both")
            found, tuned, note = config_values(ctx, config_file, TRAIN_CONFIG_KEYS, use=CROSSVAL_CONFIG_KEYS)
            v = {**ctx.params, **found}
            data, model, recipe, factors, layers, epochs = (
                v[n] for n in ("data", "model", "recipe", "factors", "layers", "epochs")
            )
            lr, wd, bs, y_range, option, seed = (
                v[n] for n in ("lr", "wd", "bs", "y_range", "option", "seed")
            )
            user_col, item_col, rating_col, timestamp_col, duplicates = (
                v[n] for n in ("user_col", "item_col", "rating_col", "timestamp_col", "duplicates")
            )
            said += [note] if note else []
        cols = Reading(user_col, item_col, rating_col, timestamp_col, duplicates)
        opts = TrainOptions(model, recipe, factors, layers, epochs, lr, wd, bs, y_range, option or [], seed)
        if model_dir is not None:
            from collabkit.persist import load_model  # lazy: torch loads only when the command runs

            given = set(_given_options(ctx, keep=()))
            trained = load_model(model_dir)
            if data is None:
                data, cols = read_as_recorded(model_dir, trained, cols, given)
                said.append(recorded_line(data, model_dir))
            opts, line = _train_as_recorded(model_dir, trained, opts, "--seed" in given)
            said.append(line)
        elif data is None:
            said.append("data: ml-100k, the default (give --data FILE, or a model folder to use its table)")
        data = data if data is not None else "ml-100k"
        model, seed = opts.model or "dotbias", opts.seed  # the folds are cut with the run's seed
        if not as_json:
            for line in said:
                typer.echo(line)
        names = [n.strip() for n in folds.split(",") if n.strip()]
        if not names:
            raise CollabkitError("--folds is empty; give 'kfold' or split names such as u1,u2,u3")
        if names == ["kfold"] and (isinstance(k, bool) or k < 2):
            raise CollabkitError(f"--k must be at least 2 folds, got {k}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CollabkitError(f"--folds names {', '.join(twice)} more than once; each fold is scored once")
        first_spec = split_spec("kfold", seed=seed, fold=0, k=k) if names == ["kfold"] else None
        first_spec = first_spec or split_spec(names[0], seed=seed)
        o = opts
        config = _config(
            model, o.recipe, o.factors, o.layers, o.epochs, o.lr, o.wd, o.bs, o.y_range, first_spec, o.seed,
            options=o.options,
        )  # fmt: skip
        table = _load(data, *cols[:4], True, cols.duplicates)
        if names == ["kfold"] and k > len(table):
            raise CollabkitError(
                f"--k {k:,} folds, but the table has {len(table):,} rows; give at most that many"
            )
        specs = (
            [split_spec("kfold", seed=seed, fold=i, k=k) for i in range(k)]
            if names == ["kfold"]
            else [split_spec(name, seed=seed) for name in names]
        )
        if tuned is not None:  # refused if tuning read any fold's held-out rows
            line = tuned_line(tuned, table, specs)
            if not as_json:
                typer.echo(line)

        def show(res: TrainResult) -> None:
            if as_json:
                return
            if res is first[0]:
                typer.echo(res.settings_line(specs))
            figures = {**res.valid, **((res.ranking or {}).get("metrics") or {})}
            popular = (res.ranking or {}).get("baseline")
            if popular:  # the most-rated list's NDCG beside the fold's own
                top = res.ranking["k"] if res.ranking else 10
                figures[f"popular_ndcg@{top}"] = popular["metrics"][f"ndcg@{top}"]
            base = res.valid.get("baselines")
            if base:  # the biases-only baseline's rmse beside the fold's own
                figures["biases_rmse"] = base["biases"]["rmse"]
            shown = [f for f in figures if f not in ("n", "baselines", "beats_biases", "beats_mean", "note")]
            typer.echo(f"{res.split.describe():<22}" + "  ".join(_fmt(m, figures[m]) for m in shown))

        first: list[Any] = [None]

        def on_fold(res: TrainResult) -> None:
            if first[0] is None:
                first[0] = res
            show(res)

        cv = cross_validate(
            table, config, specs, data_name=data, on_fold=on_fold, ranking_k=top_k if ranking else None
        )
        if not as_json:
            typer.echo(
                "mean"
                + " " * 18
                + "  ".join(f"{m} {s['mean']:.4f} ± {s['std']:.4f}" for m, s in cv.summary.items())
            )
        emit(cv.to_dict(), as_json)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    user: Annotated[list[str], typer.Option("--user", help="Raw user id (repeat, paired with --item).")],
    item: Annotated[list[str], typer.Option("--item", help="Raw item id or title (repeat).")],
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback",
            help="Answer the training mean (flagged) for a user or item with no training ratings.",
        ),
    ] = False,
    when: Annotated[
        list[str] | None,
        typer.Option(
            "--when",
            help="The rating's time, Unix seconds or a date (one, or one per pair), for a model with "
            "day effects (bayesmf); without it, a rating at no particular day.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predicted ratings for (user, item) pairs given as raw ids (items also by title)."""
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.recommend import Recommender

        if len(user) != len(item):
            raise CollabkitError(f"give as many --user as --item options ({len(user)} vs {len(item)})")
        rec = Recommender.load(model_dir)
        users = [rec.parse_user(u) for u in user]
        items = [rec.parse_item(i) for i in item]
        table = rec.predict_details(users, items, unknown="mean" if fallback else "error", when=when or None)
        rows = [
            {"user": u, "item": i, "title": rec.title(i), "rating": float(r), "fallback": bool(f)}
            for u, i, r, f in zip(users, items, table["rating"], table["fallback"], strict=True)
        ]
        if as_json:
            emit({"predictions": rows}, True)
        else:
            for r in rows:
                flag = "\t(training mean: no training ratings)" if r["fallback"] else ""
                title = f"\t{r['title']}" if r["title"] != str(r["item"]) else ""
                typer.echo(f"{r['user']}\t{r['item']}\t{r['rating']:.3f}{title}{flag}")


CAPABILITY_WORDS = {"item_vectors": "similar items", "user_vectors": "similar users", "biases": "biases",
                    "fold_in": "new users", "explain": "explanations", "lr_find": "lr-find"}  # fmt: skip


@app.command("models")
def models(
    name: Annotated[str | None, typer.Argument(help="A family: list its settings and recipes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The model families: what each predicts, how it trains, what it can answer, and its settings."""
    with clean_errors():
        # lazy: the training stack loads only for the commands that use it
        from collabkit.models import family, model_names  # lazy: torch loads only when the command runs

        names = [name] if name is not None else list(model_names())
        rows = [_family_row(n, family(n)) for n in names]
        if not as_json:
            for row in rows:
                caps = ", ".join(
                    CAPABILITY_WORDS[k] for k, v in row["capabilities"].items() if v and k != "ratings"
                )
                typer.echo(
                    f"{row['family']}: {row['predicts']}; {row['trainer']}; answers: {caps or 'top-N only'}"
                )
                if name is not None:
                    for key, spec in row["settings"].items():
                        typer.echo(f"  -o {key}={spec['default']}  {spec['description']}")
                    for recipe, values in row["recipes"].items():
                        typer.echo(
                            f"  --recipe {recipe}: "
                            + ", ".join(f"{k} {v:g}" for k, v in values.items() if not isinstance(v, bool))
                        )
        emit({"families": rows}, as_json)


def _family_row(name: str, fam: Any) -> dict[str, Any]:
    """One family's declaration, as `collabkit models` shows it."""
    settings = {}
    for key, f in fam.Settings.model_fields.items():
        default = None if f.is_required() else f.default
        settings[key] = {
            "default": "from the data" if default is None else default,
            "description": f.description or "",
        }
    return {
        "family": name,
        "predicts": "ratings" if fam.score_kind == "rating" else "ranking scores",
        "trainer": "one-cycle epochs (recipes: " + ", ".join(fam.recipes) + ")"
        if fam.recipes
        else "fits itself",
        "capabilities": fam.capabilities().to_dict(),
        "settings": settings,
        "recipes": {k: r.model_dump() for k, r in fam.recipes.items()},
    }
