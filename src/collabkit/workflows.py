"""Whole jobs above the chapter layer: train on a split and save, evaluate a saved model, cross-validate.

The command and the service call these and print their typed results; each job says which
settings it used and where they came from, and an evaluation refuses to score a model on rows it
was trained on unless asked to (and then reports how many).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from collabkit.baselines import rating_baselines
from collabkit.bundle import DataInfo, TrainedModel, table_fingerprint, trained_from_learner
from collabkit.collab import collab_learner
from collabkit.data import load_ratings
from collabkit.data.loaders import CollabDataLoaders
from collabkit.data.side import with_movielens_users
from collabkit.data.splits import SplitSpec, make_split
from collabkit.data.tables import day_numbers
from collabkit.data.vocab import encode_pairs
from collabkit.defaults import MIN_COUNT
from collabkit.errors import CollabkitError
from collabkit.evaluate import summarize_folds
from collabkit.models import family, model_names
from collabkit.models.settings import RECIPE_FIELDS, Recipe, output_range, parse_recipe, parse_settings
from collabkit.persist import check_destination, load_model, save_model
from collabkit.ranking import evaluate_ranking
from collabkit.scoring import score_pairs, training_facts
from collabkit.train import distributed
from collabkit.train.callbacks import Callback, SaveModelCallback, StopAfterEpochCallback
from collabkit.train.checkpoint import CheckpointCallback
from collabkit.train.epoch_choice import INNER_VALID, choose_epochs, start_from_biases
from collabkit.train.learner import set_seed
from collabkit.train.lr_find import lr_find
from collabkit.train.members import member_trainer
from collabkit.train.run_folder import read_run

StepKind = Literal["auto", "fused", "autograd"]
RecipeName = Literal["fast", "chapter"]
STEP_KINDS = ("auto", "fused", "autograd")


# The model each task gets by default. ranking: easeknn (EASE blended with user kNN) had the best
# NDCG@10 on ML-100k u1..u5 with hyperparameters chosen on a validation part of u1's training rows,
# and fits in about a second (bench/ranking.py); ials ties it on NDCG but fits ~10x slower.
DEFAULT_MODEL = {"rating": "dotbias", "ranking": "easeknn"}


def model_for_task(task: str) -> str:
    """The model `collabkit train --task TASK` uses when no --model is given."""
    if task not in DEFAULT_MODEL:
        raise CollabkitError(f"unknown task {task!r}; expected one of: {', '.join(DEFAULT_MODEL)}")
    return DEFAULT_MODEL[task]


def recipe_for(model: str, name: str = "fast") -> Recipe:
    """The family's named recipe (its file declares them); an error for a family that fits itself."""
    fam = family(model)
    if not fam.recipes:
        raise CollabkitError(f"{model} fits itself, not by the Learner's one-cycle epochs: it has no recipes")
    if name not in fam.recipes:
        raise CollabkitError(f"unknown recipe {name!r}; expected one of: {', '.join(fam.recipes)}")
    return fam.recipes[name]


def y_range_for(ratings: np.ndarray) -> tuple[float, float]:
    """An output range that holds the ratings with room at the top, as the chapter's (0, 5.5) for 1..5."""
    return output_range(float(np.min(ratings)), float(np.max(ratings)))


@dataclass
class TrainConfig:
    """What to train and how.

    `settings` are the family's own (n_factors, layers, y_range, l2, k, ...: see `collabkit train
    --model NAME --help-settings` or the family's `Settings` class); unknown ones are refused.
    bs, epochs, lr and wd come from the recipe unless given; a family that fits itself takes them
    only where its settings declare them (bpr: bs, epochs, lr) and refuses them otherwise.
    """

    model: str = "dotbias"
    recipe: str | None = None  # None: "fast" for a family with recipes
    bs: int | None = None
    epochs: int | None = None
    lr: float | None = None
    wd: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    split: SplitSpec = field(default_factory=SplitSpec)
    seed: int = 42
    device: str = "cpu"
    step: str = "auto"  # auto | fused | autograd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "split": self.split.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise CollabkitError(f"unknown training settings {unknown}")
        known = dict(data)
        known["split"] = SplitSpec.from_dict(known.get("split") or {})
        return cls(**known)

    def check(self) -> None:
        """Refuse bad settings before any data is read (what needs the ratings is checked in `plan`)."""
        plan = self.plan(None)
        fam = family(self.model)  # the family's own settings class checks names, types and ranges
        parse_settings(self.model, fam.Settings, plan.settings)

    def plan(self, train_y: np.ndarray | None) -> Plan:
        """The settings to train with, checked, and where each came from ("given", the recipe, the data).

        `train_y` (the training ratings) sets an output range not given; None skips that step.
        """
        fam = family(self.model)
        if self.step not in STEP_KINDS:
            raise CollabkitError(f"unknown step {self.step!r}; expected one of: {', '.join(STEP_KINDS)}")
        settings = dict(self.settings)
        sources = dict.fromkeys(settings, "given")
        overrides = {k: getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k) is not None}
        recipe: Recipe | None = None
        if fam.recipes:
            name = self.recipe or "fast"
            base = recipe_for(self.model, name)
            recipe = parse_recipe(self.model, {**base.model_dump(), **overrides})
            sources |= {k: "given" if k in overrides else f"{name} recipe" for k in RECIPE_FIELDS}
        else:
            how = f"{self.model} fits itself, not by the Learner's one-cycle epochs"
            if self.recipe is not None:
                raise CollabkitError(f"{how}: it has no recipe to choose (--recipe)")
            if self.step != "auto":
                raise CollabkitError(f"{how}: --step {self.step} does not apply")
            for key, value in overrides.items():
                if key not in fam.Settings.model_fields:
                    raise CollabkitError(
                        f"{how}: it takes no --{key}; its settings are: {fam.Settings.help_line()}"
                    )
                settings[key], sources[key] = value, "given"
        if "y_range" in fam.Settings.model_fields and train_y is not None:
            if settings.get("y_range") is None:
                settings["y_range"] = tuple(round(v, 6) for v in y_range_for(train_y))
                sources["y_range"] = "the data"
            else:
                settings["y_range"] = check_y_range(settings["y_range"], train_y)
        return Plan(self.model, recipe, self.recipe or ("fast" if recipe else None), settings, sources)


@dataclass
class Plan:
    """A run's checked settings: the family's, its recipe (None: the family fits itself), sources."""

    model: str
    recipe: Recipe | None
    recipe_name: str | None
    settings: dict[str, Any]  # the given ones and y_range; the family completes the rest from the data
    sources: dict[str, str]


def resolve_device(device: str) -> str:
    """`device` if this machine has it; a clear error when CUDA is asked for and absent."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CollabkitError(
            f"device {device!r} asked for, but PyTorch sees no CUDA GPU here; use --device cpu"
        )
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise CollabkitError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")
    return device


@dataclass
class TrainResult:
    """What a training run did: settings used (and their source), held-out figures, history, where saved."""

    model: str
    data: DataInfo
    split: SplitSpec
    recipe: str | None  # None: the family fits itself
    settings: dict[str, Any]
    sources: dict[str, str]
    n_train: int
    n_valid: int
    valid: dict[str, Any]  # held-out figures (see score_rows), empty with no held-out rows
    fit_seconds: float
    history: list[dict[str, float]]
    world_size: int = 1
    out: str | None = None
    ranking: dict[str, Any] | None = None  # evaluate_ranking on the held-out rows, when asked
    best: dict[str, Any] | None = None  # a refitting keep_best recipe's choice (see _choose_epochs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"], d["split"] = self.data.to_dict(), self.split.to_dict()
        return d

    def settings_line(self, splits: Sequence[SplitSpec] | None = None) -> str:
        """The run's settings in one line; with `splits`, naming every fold of a cross-validation."""
        return settings_line(self.model, self.settings, self.sources, self.split, splits)


def folds_text(splits: Sequence[SplitSpec]) -> str:
    """`folds u1, u2, u3` or `5 folds of kfold (seed 42)`: what a cross-validation's header says."""
    if all(s.kind == "kfold" for s in splits):
        return f"{len(splits)} folds of kfold (seed {splits[0].seed})"
    return "folds " + ", ".join(s.describe() for s in splits)


def settings_line(
    model: str, s: dict[str, Any], sources: dict[str, str], split: SplitSpec,
    splits: Sequence[SplitSpec] | None = None,
) -> str:  # fmt: skip
    """One line naming every setting a run used, and where those not given came from."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, (list, tuple)):
            return (
                "(" + ", ".join(fmt(x) for x in v) + ")"
                if isinstance(v, tuple)
                else f"[{', '.join(fmt(x) for x in v)}]"
            )
        return str(v)

    # a setting left at None is off (min_rating, max_items: every rating, every item): not shown
    shown = [k for k in s if k not in ("seed", "device", "step", "keep_best") and s[k] is not None]
    parts = ", ".join(f"{k} {fmt(s[k])}" for k in shown)
    notes = []
    by_source: dict[str, list[str]] = {}
    for k in shown:
        src = sources.get(k)
        if src is not None and src != "given":
            by_source.setdefault(src, []).append(k)
    for src, keys in by_source.items():
        notes.append(f"{', '.join(keys)} from {'the ' if not src.startswith('the ') else ''}{src}")
    note = f" ({'; '.join(notes)})" if notes else ""
    where = folds_text(splits) if splits else f"split {split.describe()}"
    return f"{model}: {parts}{note}; {where}; seed {s['seed']}"


READING_KEYS = ("user_col", "item_col", "rating_col", "timestamp_col", "duplicates")


@dataclass
class _Run:
    """A training run made ready: data loaders, learner and the settings it uses."""

    dls: CollabDataLoaders
    learn: Any
    plan: Plan
    settings: dict[str, Any]  # every setting used, for the result and the model folder
    train_rows: np.ndarray  # every training row (a keep_best recipe watches some of them)
    valid_rows: np.ndarray  # the split's held-out rows
    held_aside: int = 0  # training rows a keep_best recipe watches instead of training on


def _prepare(
    table: pd.DataFrame, config: TrainConfig, log: Callable[[str], None] | None,
    *, hold_aside: bool = True, announce: bool = True, callbacks: Sequence[Callback] = (),
) -> _Run:  # fmt: skip
    """Split, plan and build the learner. `hold_aside=False`: train on every training row even
    with a keep_best recipe (the run after the choice); `announce=False`: no settings line;
    `callbacks` join the learner for every fit it runs."""
    device = distributed.init_from_env(resolve_device(config.device))
    log = log if distributed.is_main() else None
    set_seed(config.seed)
    train_rows, valid_rows = make_split(table, config.split)
    train_y = table["rating"].to_numpy(dtype=np.float32)[train_rows]
    if len(train_y) == 0:
        raise CollabkitError(f"split {config.split.describe()} leaves no training rows; nothing to train on")
    plan = config.plan(train_y)
    recipe = plan.recipe
    fit_rows, watch_rows = train_rows, valid_rows
    if recipe is not None and recipe.keep_best and hold_aside and len(train_rows) >= 20:
        perm = np.random.default_rng(config.seed).permutation(train_rows)
        cut = max(1, int(len(perm) * INNER_VALID))
        watch_rows, fit_rows = np.sort(perm[:cut]), np.sort(perm[cut:])
    dls = CollabDataLoaders.from_df(
        table, user_name="user", item_name="item", rating_name="rating", seed=config.seed,
        bs=recipe.bs if recipe is not None else 64, train_rows=fit_rows, valid_rows=watch_rows,
    )  # fmt: skip
    dls.split = config.split
    learn = collab_learner(
        dls, model=config.model, settings=plan.settings, device=device, log=log,
        show_progress=log is not None, fused={"auto": None, "fused": True, "autograd": False}[config.step],
    )  # fmt: skip
    if learn.config is None:  # collab_learner always sets it: this is a bug, not bad input
        raise RuntimeError("collab_learner built a Learner without its config")
    learn.add_cbs(list(callbacks))
    settings: dict[str, Any] = dict(learn.config.settings.used())
    if recipe is not None:
        settings |= recipe.model_dump() | {"step": config.step}
        if any(src.endswith("recipe") for src in plan.sources.values()):  # named only when it gave a value
            settings["recipe"] = plan.recipe_name
    settings |= {"seed": config.seed, "device": device}
    held = len(watch_rows) if watch_rows is not valid_rows else 0
    if log is not None and announce:
        described = family(config.model).describe_config(learn.config)  # compact where a family says so
        described = {k: v for k, v in described.items() if k in settings}
        log(settings_line(config.model, {**settings, **described}, plan.sources, config.split))
        if held and getattr(learn.model, "refit_best", False):
            log(f"choosing the epoch count (0: the biases-only start) by the loss on {held:,} training rows "
                "held aside, then training on every training row")  # fmt: skip
        elif held:
            log(f"keeping the best epoch by the loss on {held:,} training rows held aside")
    return _Run(dls, learn, plan, settings, train_rows, valid_rows, held)


def train(
    table: pd.DataFrame,
    config: TrainConfig,
    *,
    data_name: str = "table",
    out: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    checkpoint_every: int | None = None,
    run_info: dict[str, Any] | None = None,
    resume: bool = False,
    ranking_k: int | None = None,
    reading: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train `config.model` with one-cycle on a split of `table`, score its held-out rows, save to `out`.

    With `checkpoint_every`, a checkpoint goes to `out/checkpoints` every so many epochs and when
    Ctrl-C stops the run (KeyboardInterrupt is raised after it is written); `resume=True` continues
    from it, ending with the weights the uninterrupted run would have. `run_info` is what a
    resumed command needs to load the same data (written beside the checkpoint). `reading` is how
    the table was read (its columns, the duplicates rule), recorded in the model folder so that
    `collabkit evaluate MODEL` can read it again without being told. `callbacks` join every fit of
    a family trained by the Learner's epochs (a keep_best recipe's choice, then its run on every
    training row); `collabkit.tune` prunes trials with one.
    """

    if out is not None:
        check_destination(Path(out))
    if family(config.model).reads_side_columns(config.settings):  # a hybrid: the user table's columns
        table = with_movielens_users(table, data_name)
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or checkpoint_every < 1):
        raise CollabkitError(
            f"checkpoint every must be a whole number of epochs, at least 1; got {checkpoint_every}"
        )
    if (checkpoint_every or resume) and out is None:
        raise CollabkitError("checkpoints need --out: they are written inside the model's folder")
    run = _prepare(table, config, log, callbacks=callbacks)
    recipe = run.plan.recipe
    start = time.perf_counter()
    choice: dict[str, Any] | None = None
    if recipe is not None and run.held_aside and getattr(run.learn.model, "refit_best", False):
        choice = _choose_epochs(run, recipe, log)  # then every training row, for the chosen count
        run = _prepare(table, config, log, hold_aside=False, announce=False, callbacks=callbacks)
    learn = run.learn
    cbs: list[Any] = []
    ckpt = Path(out) / "checkpoints" if out is not None else None
    if checkpoint_every and ckpt is not None:
        info = {"data": data_name, "config": config.to_dict(), **(run_info or {}),
                "fingerprint": table_fingerprint(table)}  # fmt: skip
        cbs.append(CheckpointCallback(ckpt, checkpoint_every, run=info))
    start_epoch = learn.load_checkpoint(ckpt) if resume and ckpt is not None else 0
    net = learn.model
    if recipe is not None and choice is not None and choice["best_epoch"] == 0:  # the biases-only start
        start_from_biases(net, run.dls.train.x, run.dls.train.y, zero_factors=True)
    elif recipe is not None:  # the Learner's one-cycle loop
        epochs = recipe.epochs if choice is None else choice["best_epoch"]
        if start_epoch >= epochs:
            raise CollabkitError(f"the checkpoint in {ckpt} is of a finished run ({start_epoch} epochs)")
        if epochs < recipe.epochs:  # the chosen epoch of the same schedule, now on every training row
            cbs.append(StopAfterEpochCallback(epochs))
        with tempfile.TemporaryDirectory(prefix="collabkit-best-") as scratch:  # the best epoch's weights
            if recipe.keep_best and run.held_aside:
                cbs.append(SaveModelCallback(fname="best"))
                learn.path = Path(scratch)
            learn.fit_one_cycle(recipe.epochs, recipe.lr, wd=recipe.wd, cbs=cbs, start_epoch=start_epoch)
    else:  # the family fits itself (closed form, alternating solves, its own sampler): all pairs at once
        if hasattr(net, "show_progress"):  # a family with its own loop (bpr) reports as the Learner does
            net.log, net.show_progress = log, None if log is not None else False
        if getattr(net, "trains_members", False):  # a blend: members trained as they would be alone
            trainer = member_trainer(run.dls, config.seed, next(net.buffers()).device)
            held = net.fit_members(_with_days(net, run.dls), run.dls.train.y, trainer, seed=config.seed)
            if log is not None:
                each = ", ".join(f"{k} {v:.4f}" for k, v in held["member_rmse"].items())
                log(
                    f"blend weights fitted on {held['held_aside']:,} held-aside training rows: RMSE there "
                    f"{each}; blend {held['blend_rmse']:.4f}"
                )
        else:
            net.fit_direct(_with_days(net, run.dls), run.dls.train.y)
    fit_seconds = time.perf_counter() - start
    data = DataInfo.of(table, data_name, "user", "item", "rating", reading=reading)
    trained = trained_from_learner(learn, data=data)
    rows = table.iloc[run.train_rows]  # all training rows, those a keep_best recipe watched too
    trained.train_x = torch.from_numpy(encode_pairs(trained.users, trained.items, rows["user"], rows["item"]))
    trained.train_y = torch.from_numpy(table["rating"].to_numpy(dtype=np.float32)[run.train_rows])
    valid_rows = table.iloc[run.valid_rows]
    valid = score_rows(trained, valid_rows) if len(valid_rows) else {}
    overlap = count_overlap(trained, valid_rows) if len(valid_rows) else 0
    if overlap:  # only a table that keeps repeated pairs (duplicates="keep") can get here
        valid["overlap"] = overlap
        valid["note"] = (
            f"{overlap:,} held-out rows repeat a (user, item) pair that was trained on: "
            "the figures are flattered by them"
        )
    ranking = None
    if ranking_k is not None and len(valid_rows):
        ranking = evaluate_ranking(trained, valid_rows, k=ranking_k)
    result = TrainResult(
        model=config.model, data=data, split=config.split, recipe=run.plan.recipe_name,
        settings=run.settings, sources=run.plan.sources, n_train=len(run.train_rows),
        n_valid=len(run.valid_rows),
        valid=valid, fit_seconds=fit_seconds, history=trained.history,
        world_size=distributed.world_size(), ranking=ranking, best=choice,
    )  # fmt: skip
    if out is not None and distributed.is_main():
        trained.results = {
            k: v for k, v in result.to_dict().items() if k not in ("history", "out", "data", "split")
        }
        result.out = str(save_model(out, trained))  # the checkpoints go with the old folder
    return result


def _choose_epochs(run: _Run, recipe: Recipe, log: Callable[[str], None] | None) -> dict[str, Any]:
    """Score the biases-only start and each epoch of the recipe on the held-aside training rows.

    Returns `held_aside` (rows), `losses` (index 0: the start, None for a model without biases;
    index e: after epoch e) and `best_epoch`, the count with the lowest loss (the fewest on a tie).
    The test rows are never read: `run`'s validation rows are the held-aside training rows.
    """
    losses, best = choose_epochs(run.learn, recipe)
    n_train = len(run.train_rows)
    if log is not None:
        if best == 0:
            log(f"the biases-only start scored best on the {run.held_aside:,} held-aside rows "
                f"({losses[0]:.4f}; no epoch beat it): the model is its biases, fitted on all "
                f"{n_train:,} training rows")  # fmt: skip
        else:
            log(f"epoch {best} of {recipe.epochs} scored best on the {run.held_aside:,} held-aside rows "
                f"({losses[best]:.4f}); training again on all {n_train:,} training rows, to epoch {best} of "
                f"{recipe.epochs}")  # fmt: skip
    return {"held_aside": run.held_aside, "losses": losses, "best_epoch": best}


def resume(
    run_dir: str | Path,
    *,
    log: Callable[[str], None] | None = print,
    progress: bool = False,
) -> TrainResult:
    """Finish the run whose checkpoints are in `run_dir`, on the same data with the same settings.

    The run folder (`collabkit.train.run_folder`) records the data's name or path, its column names,
    the training settings and how often to checkpoint; the result ends with the weights the
    uninterrupted run would have, saved in `run_dir`.
    """
    record = read_run(run_dir)
    config = TrainConfig.from_dict(record.config)
    config.check()
    info = record.info
    columns = {k: info.get(f"{k}_col") for k in ("user", "item", "rating", "timestamp")}
    given = {k: v for k, v in columns.items() if v is not None}
    duplicates = cast(Any, info.get("duplicates") or "error")
    table = load_ratings(record.data, **given, progress=progress, duplicates=duplicates)
    table.attrs.setdefault("name", record.data)
    recorded = info.get("fingerprint")
    if recorded is not None and recorded != table_fingerprint(table):
        raise CollabkitError(
            f"{record.data} has changed since the run in {record.run_dir} started ({len(table):,} rows now); "
            "a resumed run must train on the same ratings: train it again from the start"
        )
    reading = {k: info.get(k) for k in READING_KEYS if info.get(k) is not None}
    return train(
        table, config, data_name=record.data, out=record.run_dir, log=log,
        checkpoint_every=int(info.get("checkpoint_every") or 1), run_info=info, resume=True, reading=reading,
    )  # fmt: skip


def check_lr_find(model: str) -> None:
    """An error for a family that has no learning rate to find (it fits itself)."""
    if not family(model).capabilities().lr_find:
        able = ", ".join(n for n in model_names() if family(n).capabilities().lr_find)
        raise CollabkitError(
            f"{model} fits itself (closed form, alternating solves or its own sampler), not by the "
            f"Learner's one-cycle loop: there is no learning rate to find (lr-find applies to {able})"
        )


def find_lr(
    table: pd.DataFrame,
    config: TrainConfig,
    *,
    plot_path: str | Path | None = None,
    num_it: int = 100,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """fastai's learning-rate finder on `config`'s model and data; suggestions and the sweep."""
    check_lr_find(config.model)
    run = _prepare(table, config, log)
    found = lr_find(run.learn, num_it=num_it, show_plot=False, plot_path=plot_path)
    return {
        "model": config.model,
        "bs": run.plan.recipe.bs if run.plan.recipe is not None else None,
        "suggestions": found.suggestions._asdict(),
        "lrs": found.lrs,
        "losses": found.losses,
        "plot": None if plot_path is None else str(plot_path),
    }


def check_y_range(y_range: Sequence[float], ratings: np.ndarray) -> tuple[float, float]:
    """`y_range` as floats, or an error when it cannot hold the ratings (sigmoid_range never
    reaches its ends)."""
    if len(y_range) != 2:
        raise CollabkitError(f"y_range must be LOW HIGH, got {list(y_range)}")
    lo, hi = float(y_range[0]), float(y_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise CollabkitError(f"y_range must be finite numbers, got {lo:g} {hi:g}")
    r_lo, r_hi = float(np.min(ratings)), float(np.max(ratings))
    if not lo < hi:
        raise CollabkitError(f"y_range must be LOW HIGH with LOW < HIGH, got {lo:g} {hi:g}")
    if r_lo <= lo or r_hi >= hi:
        raise CollabkitError(
            f"y_range {lo:g} {hi:g} cannot hold the ratings, which run from {r_lo:g} to {r_hi:g} "
            f"(the output never reaches the ends of the range); leave --y-range out to set it from the data"
        )
    return (lo, hi)


def _with_days(net: Any, dls: CollabDataLoaders) -> Tensor:
    """The training pairs, with each row's day as a third column for a model that takes days."""
    days = dls.train_days() if getattr(net, "takes_days", False) else None
    x = dls.train.x
    return x if days is None else torch.cat([x, torch.from_numpy(days)[:, None]], dim=1)


def pairs_of(trained: TrainedModel, rows: pd.DataFrame) -> Tensor:
    """Rows' (user, item) indices, and each rating's day where the model takes days and the rows
    have timestamps (a row without one is scored at no particular day)."""
    x = torch.from_numpy(encode_pairs(trained.users, trained.items, rows["user"], rows["item"]))
    if getattr(trained.model, "takes_days", False) and "timestamp" in rows.columns:
        x = torch.cat([x, torch.from_numpy(day_numbers(rows["timestamp"]))[:, None]], dim=1)
    return x


def score_rows(trained: TrainedModel, rows: pd.DataFrame) -> dict[str, Any]:
    """Rating error of a trained model on held-out rows (columns user, item, rating).

    The one scorer (`collabkit.scoring.score_pairs`, which the epoch table uses too): a pair whose
    user or item has no training ratings (the model learned nothing about it) is predicted by the
    biases-only model of the training rows and counted in `fallback`. A ranking model has no
    rating error: only `n` is given.
    """
    if trained.model.score_kind != "rating":
        return {"n": len(rows), "note": f"{trained.name} is a ranking model: it predicts no ratings"}
    x = pairs_of(trained, rows)
    y = torch.tensor(rows["rating"].to_numpy(dtype=np.float32))
    facts = training_facts(trained.train_x, trained.train_y, len(trained.users), len(trained.items))
    res = score_pairs(
        trained.model, x, y, facts.user_counts, facts.item_counts, facts.mean, biases=facts.biases
    )
    out: dict[str, Any] = {**res, "n": len(rows), "fallback": int(res["fallback"])}
    if len(rows):
        base = rating_baselines(trained.train_x.numpy(), trained.train_y.numpy(), x[:, :2].numpy(), y.numpy(),
                                len(trained.users), len(trained.items))  # fmt: skip
        out["baselines"] = base
        out["beats_biases"] = bool(res["rmse"] < base["biases"]["rmse"])
        out["beats_mean"] = bool(res["rmse"] < base["global_mean"]["rmse"])
    return out


@dataclass
class Evaluation:
    """A saved model scored on held-out rows, with everything that qualifies the figures."""

    model_dir: str
    split: str
    metrics: dict[str, Any]
    n: int
    overlap: int  # held-out rows whose (user, item) pair was trained on
    same_data: bool | None  # None: the model does not record its table
    notes: list[str] = field(default_factory=list)
    ranking: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_saved(
    model_dir: str | Path,
    table: pd.DataFrame,
    split: SplitSpec | None = None,
    *,
    allow_overlap: bool = False,
    ranking_k: int | None = None,
    relevant_threshold: float = 4.0,
    popularity_penalty: float = 0.0,
    trained: TrainedModel | None = None,
    min_count: int = MIN_COUNT,
) -> Evaluation:
    """Metrics of a saved model on the held-out rows of its own split (or of `split`) of `table`.

    With `ranking_k`, the ranking among items with at least `min_count` training ratings (default:
    what `recommend` serves; see `collabkit.ranking.evaluate_ranking`).

    Raises:
        CollabkitError: the model records no split and none is given; the table is not the one the
            model was trained on and no split is given; or the held-out rows hold training pairs
            and `allow_overlap` is False.
    """
    trained = trained if trained is not None else load_model(model_dir)  # given: already loaded
    notes: list[str] = []
    same = None if trained.data is None else trained.data.fingerprint == table_fingerprint(table)
    if split is None:
        if trained.split is None:
            raise CollabkitError(
                f"{model_dir} does not record how it was split (rows given directly, or an older collabkit); "
                "give --split to choose the held-out rows"
            )
        if same is False and trained.data is not None:
            raise CollabkitError(
                f"{model_dir} was trained on {trained.data.name} ({trained.data.n_rows:,} rows), and "
                f"this table ({len(table):,} rows) is a different one, so its own split cannot be "
                "rebuilt; give --split to evaluate on this table anyway"
            )
        split = trained.split
    elif same is False and trained.data is not None:
        notes.append(f"evaluated on a different table from the one trained on ({trained.data.name})")
    _, valid_rows = make_split(table, split)
    rows = table.iloc[valid_rows]
    overlap = count_overlap(trained, rows)
    own = trained.split is not None and split == trained.split and same is not False
    if overlap and not own and not allow_overlap:
        raise CollabkitError(
            f"{overlap:,} of the {len(rows):,} held-out rows of split {split.describe()} were trained on "
            f"(the model's own split is {trained.split.describe() if trained.split else 'not recorded'}); "
            "scores on them would flatter the model. Leave --split out to use the model's own split, or pass "
            "--allow-overlap to score them anyway"
        )
    if overlap:
        notes.append(f"{overlap:,} held-out rows were trained on: the figures are flattered by them")
    metrics = score_rows(trained, rows)
    result = Evaluation(str(model_dir), split.describe(), metrics, len(rows), overlap, same, notes)
    if ranking_k is not None:
        result.ranking = evaluate_ranking(
            trained,
            rows,
            k=ranking_k,
            relevant_threshold=relevant_threshold,
            popularity_penalty=popularity_penalty,
            min_count=min_count,
        )
    return result


def count_overlap(trained: TrainedModel, rows: pd.DataFrame) -> int:
    """How many of `rows` have a (user, item) pair among the model's training ratings."""
    u, i = encode_pairs(trained.users, trained.items, rows["user"], rows["item"]).T
    keys = u.astype(np.int64) * len(trained.items) + i
    known = (u > 0) & (i > 0)
    return int(np.isin(keys[known], trained.trained_pairs()).sum())


@dataclass
class CrossValidation:
    """Per-fold held-out figures and their mean and standard deviation."""

    model: str
    settings: str
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cross_validate(
    table: pd.DataFrame,
    config: TrainConfig,
    splits: Sequence[SplitSpec],
    *,
    data_name: str = "table",
    on_fold: Callable[[TrainResult], None] | None = None,
    ranking_k: int | None = None,
) -> CrossValidation:
    """Train and score `config` on each split; the figures of every fold and their mean ± std.

    With `ranking_k`, each fold's ranking metrics at k (see `collabkit.ranking`) join its row.
    """
    if not splits:
        raise CollabkitError("cross-validation needs at least one split")
    folds = []
    line = ""
    for spec in splits:
        res = train(table, replace(config, split=spec), data_name=data_name, log=None, ranking_k=ranking_k)
        line = line or res.settings_line(splits)
        row = {"fold": spec.describe(), **res.valid, **((res.ranking or {}).get("metrics") or {})}
        folds.append(row)
        if on_fold is not None:
            on_fold(res)
    numeric = [{k: v for k, v in f.items() if isinstance(v, float)} for f in folds]
    return CrossValidation(config.model, line, folds, summarize_folds(numeric))
