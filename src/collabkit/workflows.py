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
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from collabkit.bundle import DataInfo, TrainedModel, table_fingerprint, trained_from_learner
from collabkit.collab import collab_learner
from collabkit.data.loaders import CollabDataLoaders
from collabkit.data.splits import SplitSpec, make_split
from collabkit.errors import CollabkitError
from collabkit.evaluate import mae, mse, rmse, summarize_folds
from collabkit.models import CollabModel, ModelConfig, check_model_name, family
from collabkit.train import distributed
from collabkit.train.learner import set_seed

StepKind = Literal["auto", "fused", "autograd"]
RecipeName = Literal["fast", "chapter"]
STEP_KINDS = ("auto", "fused", "autograd")


@dataclass(frozen=True)
class Recipe:
    """Batch size, epochs, peak learning rate and weight decay of a one-cycle run.

    `keep_best`: hold out a tenth of the training rows (never the test rows) and keep the epoch
    with the lowest loss on them, instead of the last epoch.
    """

    bs: int
    epochs: int
    lr: float
    wd: float
    keep_best: bool = False


CHAPTER = Recipe(bs=64, epochs=5, lr=5e-3, wd=0.1)  # fastbook chapter 8's settings
# Tuned on ML-100k's random 20% split (seed 42): see bench/speed.py and the speed issue's note.
# Raising the learning rate with the batch overfits; a moderate batch and one more epoch do not.
FAST = {
    "dot": Recipe(bs=768, epochs=6, lr=5e-3, wd=0.1),
    "dotbias": Recipe(bs=768, epochs=6, lr=5e-3, wd=0.1),
    # the deep models overfit in their last epoch (valid 0.859 then 0.893): keep the best one
    "nn": Recipe(bs=512, epochs=5, lr=5e-3, wd=0.1, keep_best=True),
    "classifier": Recipe(bs=512, epochs=5, lr=5e-3, wd=0.1, keep_best=True),
}


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
    """The named recipe's settings for `model` (a model with no fast recipe gets the chapter's)."""
    if name not in ("fast", "chapter"):
        raise CollabkitError(f"unknown recipe {name!r}; expected fast or chapter")
    check_model_name(model)
    return FAST.get(model, CHAPTER) if name == "fast" else CHAPTER


def y_range_for(ratings: np.ndarray) -> tuple[float, float]:
    """An output range that holds the ratings with room at the top, as the chapter's (0, 5.5) for 1..5."""
    lo, hi = float(np.min(ratings)), float(np.max(ratings))
    span = max(hi - lo, 1.0)
    return (0.0 if lo >= 0 else lo - 0.1 * span, hi * 1.1 if hi > 0 else hi + 0.1 * span)


@dataclass
class TrainConfig:
    """What to train and how. None means: from the recipe (bs, epochs, lr, wd) or the data (y_range)."""

    model: str = "dotbias"
    recipe: str = "fast"  # "fast" (collabkit's tuned settings) or "chapter" (bs 64, 5 epochs, 5e-3, 0.1)
    bs: int | None = None
    epochs: int | None = None
    lr: float | None = None
    wd: float | None = None
    n_factors: int = 50
    layers: list[int] = field(default_factory=lambda: [100, 50])
    y_range: tuple[float, float] | None = None  # None: set from the training ratings
    split: SplitSpec = field(default_factory=SplitSpec)
    seed: int = 42
    device: str = "cpu"
    step: str = "auto"  # auto | fused | autograd
    options: dict[str, Any] = field(default_factory=dict)  # family-specific settings (ModelConfig.options)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "split": self.split.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["split"] = SplitSpec.from_dict(known.get("split") or {})
        if known.get("y_range") is not None:
            known["y_range"] = tuple(known["y_range"])
        return cls(**known)

    def resolved(self) -> tuple[Recipe, dict[str, str]]:
        """The settings to train with, and where each came from ("given" or the recipe's name)."""
        base = recipe_for(self.model, self.recipe)
        chosen, source = {}, {}
        for key in ("bs", "epochs", "lr", "wd"):
            given = getattr(self, key)
            chosen[key] = getattr(base, key) if given is None else given
            source[key] = f"{self.recipe} recipe" if given is None else "given"
        r = Recipe(int(chosen["bs"]), int(chosen["epochs"]), float(chosen["lr"]), float(chosen["wd"]),
                   base.keep_best)  # fmt: skip
        check_settings(r, self.n_factors, self.step)
        return r, source


def check_settings(r: Recipe, n_factors: int, step: str) -> None:
    """Refuse settings that cannot train: a rate that ascends, a decay that grows the weights."""
    if r.bs < 1:
        raise CollabkitError(f"batch size must be at least 1, got {r.bs}")
    if r.epochs < 1:
        raise CollabkitError(f"epochs must be at least 1, got {r.epochs}")
    if not (math.isfinite(r.lr) and r.lr > 0):
        raise CollabkitError(
            f"learning rate must be a positive number, got {r.lr} (a negative one trains uphill)"
        )
    if not (math.isfinite(r.wd) and r.wd >= 0):
        raise CollabkitError(f"weight decay must be 0 or more, got {r.wd}")
    if n_factors < 1:
        raise CollabkitError(f"factors must be at least 1, got {n_factors}")
    if step not in STEP_KINDS:
        raise CollabkitError(f"unknown step {step!r}; expected one of: {', '.join(STEP_KINDS)}")


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
    recipe: str
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"], d["split"] = self.data.to_dict(), self.split.to_dict()
        return d

    def settings_line(self) -> str:
        s = self.settings
        return settings_line(self.model, self.recipe, s, self.sources, self.split)


def settings_line(
    model: str, recipe: str, s: dict[str, Any], sources: dict[str, str], split: SplitSpec
) -> str:
    """One line naming every setting a run uses, and which ones came from the recipe."""
    from_recipe = [k for k, v in sources.items() if v.endswith("recipe")]
    note = f" ({', '.join(from_recipe)} from the {recipe} recipe)" if from_recipe else ""
    y_note = " (from the data)" if sources.get("y_range") == "the data" else ""
    return (
        f"{model}: bs {s['bs']}, epochs {s['epochs']}, lr {s['lr']:g}, wd {s['wd']:g}{note}; "
        f"y_range {s['y_range']}{y_note}; split {split.describe()}; seed {s['seed']}"
    )


INNER_VALID = 0.1  # the share of training rows a keep_best recipe watches


@dataclass
class _Run:
    """A training run made ready: data loaders, learner and the settings it uses."""

    dls: CollabDataLoaders
    learn: Any
    recipe: Recipe
    settings: dict[str, Any]
    sources: dict[str, str]
    train_rows: np.ndarray  # every training row (a keep_best recipe watches some of them)
    valid_rows: np.ndarray  # the split's held-out rows


def _prepare(table: pd.DataFrame, config: TrainConfig, log: Callable[[str], None] | None) -> _Run:
    recipe, sources = config.resolved()
    device = distributed.init_from_env(resolve_device(config.device))
    log = log if distributed.is_main() else None
    set_seed(config.seed)
    train_rows, valid_rows = make_split(table, config.split)
    fit_rows, watch_rows = train_rows, valid_rows
    if recipe.keep_best and len(train_rows) >= 20:
        perm = np.random.default_rng(config.seed).permutation(train_rows)
        cut = max(1, int(len(perm) * INNER_VALID))
        watch_rows, fit_rows = np.sort(perm[:cut]), np.sort(perm[cut:])
    dls = CollabDataLoaders.from_df(
        table, user_name="user", item_name="item", rating_name="rating", seed=config.seed, bs=recipe.bs,
        train_rows=fit_rows, valid_rows=watch_rows,
    )  # fmt: skip
    dls.split = config.split
    train_y = table["rating"].to_numpy(dtype=np.float32)[train_rows]
    if len(train_y) == 0:
        raise CollabkitError(f"split {config.split.describe()} leaves no training rows; nothing to train on")
    y_range = config.y_range if config.y_range is not None else y_range_for(train_y)
    if config.y_range is not None:
        check_y_range(y_range, train_y)
        sources["y_range"] = "given"
    else:
        sources["y_range"] = "the data"
    settings = {
        **asdict(recipe),
        "y_range": tuple(round(v, 6) for v in y_range),
        "n_factors": config.n_factors,
        "layers": config.layers,
        "seed": config.seed,
        "device": device,
        "step": config.step,
        "options": config.options,
    }
    if log is not None:
        fam = family(config.model)
        if fam.trains_by_gradient:
            log(settings_line(config.model, config.recipe, settings, sources, config.split))
        else:  # no epochs, batches or learning rate: say the settings it does use
            opts = ", ".join(f"{k} {v}" for k, v in fam.describe_config(learn_config(table, config)).items())
            log(
                f"{config.model} ({fam.score_kind}s, fitted in closed form or by its own solver): {opts}; "
                f"split {config.split.describe()}; seed {config.seed}"
            )
        if recipe.keep_best:
            log(f"keeping the best epoch by the loss on {len(watch_rows):,} training rows held aside")
    learn = collab_learner(
        dls, model=config.model, n_factors=config.n_factors, layers=config.layers, y_range=y_range,
        device=device, log=log, show_progress=log is not None,
        fused={"auto": None, "fused": True, "autograd": False}[config.step], options=config.options,
    )  # fmt: skip
    return _Run(dls, learn, recipe, settings, sources, train_rows, valid_rows)


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
) -> TrainResult:
    """Train `config.model` with one-cycle on a split of `table`, score its held-out rows, save to `out`.

    With `checkpoint_every`, a checkpoint goes to `out/checkpoints` every so many epochs and when
    Ctrl-C stops the run (KeyboardInterrupt is raised after it is written); `resume=True` continues
    from it, ending with the weights the uninterrupted run would have. `run_info` is what a
    resumed command needs to load the same data (written beside the checkpoint).
    """
    from collabkit.persist import check_destination
    from collabkit.train.callbacks import SaveModelCallback
    from collabkit.train.checkpoint import CheckpointCallback

    if out is not None:
        check_destination(Path(out))
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or checkpoint_every < 1):
        raise CollabkitError(
            f"checkpoint every must be a whole number of epochs, at least 1; got {checkpoint_every}"
        )
    if (checkpoint_every or resume) and out is None:
        raise CollabkitError("checkpoints need --out: they are written inside the model's folder")
    run = _prepare(table, config, log)
    learn, recipe = run.learn, run.recipe
    cbs: list[Any] = []
    ckpt = Path(out) / "checkpoints" if out is not None else None
    if checkpoint_every and ckpt is not None:
        info = {"data": data_name, "config": config.to_dict(), **(run_info or {})}
        cbs.append(CheckpointCallback(ckpt, checkpoint_every, run=info))
    start_epoch = learn.load_checkpoint(ckpt) if resume and ckpt is not None else 0
    start = time.perf_counter()
    net = learn.model
    if not isinstance(net, CollabModel) or net.trains_by_gradient:
        if start_epoch >= recipe.epochs:
            raise CollabkitError(f"the checkpoint in {ckpt} is of a finished run ({start_epoch} epochs)")
        with tempfile.TemporaryDirectory(prefix="collabkit-best-") as scratch:  # the best epoch's weights
            if recipe.keep_best:
                cbs.append(SaveModelCallback(fname="best"))
                learn.path = Path(scratch)
            learn.fit_one_cycle(recipe.epochs, recipe.lr, wd=recipe.wd, cbs=cbs, start_epoch=start_epoch)
    else:  # closed-form or alternating fits: all training pairs at once, no epochs
        net.fit_direct(run.dls.train.x, run.dls.train.y)
    fit_seconds = time.perf_counter() - start
    data = DataInfo.of(table, data_name, "user", "item", "rating")
    trained = trained_from_learner(learn, data=data)
    rows = table.iloc[run.train_rows]  # all training rows, those a keep_best recipe watched too
    trained.train_x = torch.from_numpy(
        np.stack([trained.users.encode(rows["user"]), trained.items.encode(rows["item"])], 1)
    )
    trained.train_y = torch.from_numpy(table["rating"].to_numpy(dtype=np.float32)[run.train_rows])
    valid_rows = table.iloc[run.valid_rows]
    valid = score_rows(trained, valid_rows) if len(valid_rows) else {}
    ranking = None
    if ranking_k is not None and len(valid_rows):
        from collabkit.ranking import evaluate_ranking

        ranking = evaluate_ranking(trained, valid_rows, k=ranking_k)
    result = TrainResult(
        model=config.model, data=data, split=config.split, recipe=config.recipe,
        settings=run.settings, sources=run.sources, n_train=len(run.train_rows), n_valid=len(run.valid_rows),
        valid=valid, fit_seconds=fit_seconds, history=trained.history,
        world_size=distributed.world_size(), ranking=ranking,
    )  # fmt: skip
    if out is not None and distributed.is_main():
        from collabkit.persist import save_model

        trained.results = {
            k: v for k, v in result.to_dict().items() if k not in ("history", "out", "data", "split")
        }
        result.out = str(save_model(out, trained))  # the checkpoints go with the old folder
    return result


def find_lr(
    table: pd.DataFrame,
    config: TrainConfig,
    *,
    plot_path: str | Path | None = None,
    num_it: int = 100,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """fastai's learning-rate finder on `config`'s model and data; suggestions and the sweep."""
    from collabkit.train.lr_find import lr_find

    run = _prepare(table, config, log)
    found = lr_find(run.learn, num_it=num_it, show_plot=False, plot_path=plot_path)
    return {
        "model": config.model,
        "bs": run.recipe.bs,
        "suggestions": found.suggestions._asdict(),
        "lrs": found.lrs,
        "losses": found.losses,
        "plot": None if plot_path is None else str(plot_path),
    }


def learn_config(table: pd.DataFrame, config: TrainConfig) -> ModelConfig:
    """The ModelConfig a run of `config` builds (for saying its settings before it trains)."""
    return ModelConfig(config.model, 2, 2, n_factors=config.n_factors, layers=config.layers,
                       y_range=None, options=dict(config.options), levels=[1.0, 2.0])  # fmt: skip


def check_y_range(y_range: tuple[float, float], ratings: np.ndarray) -> None:
    """Refuse an output range that cannot hold the ratings (sigmoid_range never reaches its ends)."""
    lo, hi = y_range
    r_lo, r_hi = float(np.min(ratings)), float(np.max(ratings))
    if not lo < hi:
        raise CollabkitError(f"y_range must be LOW HIGH with LOW < HIGH, got {lo:g} {hi:g}")
    if r_lo <= lo or r_hi >= hi:
        raise CollabkitError(
            f"y_range {lo:g} {hi:g} cannot hold the ratings, which run from {r_lo:g} to {r_hi:g} "
            f"(the output never reaches the ends of the range); leave --y-range out to set it from the data"
        )


def score_rows(trained: TrainedModel, rows: pd.DataFrame) -> dict[str, Any]:
    """Rating error of a trained model on held-out rows (columns user, item, rating).

    A pair whose user or item has no training ratings gets the training mean (the model learned
    nothing about it) and is counted in `fallback`. A ranking model has no rating error: only
    `n` is given.
    """
    from collabkit.recommend import Recommender

    if trained.model.score_kind != "rating":
        return {"n": len(rows), "note": f"{trained.name} is a ranking model: it predicts no ratings"}
    rec = Recommender(trained)
    details = rec.predict_details(rows["user"].tolist(), rows["item"].tolist(), unknown="mean")
    preds, y = details["rating"].to_numpy(), rows["rating"].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {"mse": mse(preds, y), "rmse": rmse(preds, y), "mae": mae(preds, y)}
    out |= extra_metrics(trained, rows, details["fallback"].to_numpy())
    out |= {"n": len(rows), "fallback": int(details["fallback"].sum())}
    return out


def extra_metrics(trained: TrainedModel, rows: pd.DataFrame, fallback: np.ndarray) -> dict[str, float]:
    """The model's own further metrics (a classifier's accuracy) on the rows it has learned about."""
    from collabkit.evaluate import evaluate_model

    keep = ~fallback
    if not keep.any():
        return {}
    x = torch.from_numpy(
        np.stack([trained.users.encode(rows["user"][keep]), trained.items.encode(rows["item"][keep])], 1)
    )
    y = torch.tensor(rows["rating"].to_numpy(dtype=np.float32)[keep])
    full = evaluate_model(trained.model, x, y)
    return {k: v for k, v in full.items() if k not in ("mse", "rmse", "mae", "n")}


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
) -> Evaluation:
    """Metrics of a saved model on the held-out rows of its own split (or of `split`) of `table`.

    Raises:
        CollabkitError: the model records no split and none is given; the table is not the one the
            model was trained on and no split is given; or the held-out rows hold training pairs
            and `allow_overlap` is False.
    """
    from collabkit.persist import load_model

    trained = load_model(model_dir)
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
        from collabkit.ranking import evaluate_ranking

        result.ranking = evaluate_ranking(
            trained,
            rows,
            k=ranking_k,
            relevant_threshold=relevant_threshold,
            popularity_penalty=popularity_penalty,
        )
    return result


def count_overlap(trained: TrainedModel, rows: pd.DataFrame) -> int:
    """How many of `rows` have a (user, item) pair among the model's training ratings."""
    u = trained.users.encode(rows["user"])
    i = trained.items.encode(rows["item"])
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
        line = line or res.settings_line()
        row = {"fold": spec.describe(), **res.valid, **((res.ranking or {}).get("metrics") or {})}
        folds.append(row)
        if on_fold is not None:
            on_fold(res)
    numeric = [{k: v for k, v in f.items() if isinstance(v, float)} for f in folds]
    return CrossValidation(config.model, line, folds, summarize_folds(numeric))
