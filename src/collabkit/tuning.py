"""Hyperparameter search with Optuna on a validation part carved from a split's training rows.

`tune(table, "dotbias", split=SplitSpec("u1"), out="runs/tune", trials=20)` searches the family's
settings with Optuna's TPE sampler. Every trial trains exactly as `collabkit train` would (the same
`workflows.train`), on the split's training rows minus a seeded random part (`valid_pct`, 10%)
that scores it; the split's held-out rows are dropped before the first trial and never reach one.
A family trained by the Learner's epochs is pruned on its epoch table (Optuna's MedianPruner on the
validation loss at the same point of each trial's one-cycle schedule, see `PruneOnEpochs`); a
family that fits itself reports its final figure only.

The folder `out` holds what collabkit wrote and nothing else:
    tune.json            what the study is (data, fingerprint, split, model, validation part, space)
    study.db             Optuna's study (SQLite); `resume=True` continues it
    best.json            the best trial as options `collabkit train --config best.json` takes
    trials.csv           one row a trial: its number, state, value, settings and seconds
    validation_rows.csv  the table rows (0-based positions, user, item) that scored the trials

The search space of a family is derived from its own `Settings` fields and recipe in one place,
`search_space`: a rule per kind of field (see `_dimension_of`), so a family added later gets a
space from its declared defaults and ranges; `parse_space` narrows or extends it (`KEY=LOW:HIGH`,
`KEY=A,B,C`).

The best configuration is a choice made on the training rows of one split, and `check_tuned_rows`
refuses to score it on held-out rows it was chosen on: ML-100k's u1.base is exactly the union of
the test parts of u2..u5, so settings tuned on u1 must not be reported on u2..u5.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import annotated_types
import numpy as np
import optuna
import pandas as pd

from collabkit.atomic import write_atomic
from collabkit.bundle import table_fingerprint
from collabkit.data.splits import SplitSpec, make_split
from collabkit.errors import CollabkitError
from collabkit.jsonable import dumps
from collabkit.models import family
from collabkit.models.settings import RECIPE_FIELDS, parse_recipe, parse_settings
from collabkit.persist import check_own_folder
from collabkit.train.callbacks import Callback
from collabkit.workflows import TrainConfig, train

FORMAT = 1  # tune.json's and best.json's format version
TUNE_FILE, STUDY_FILE, BEST_FILE = "tune.json", "study.db", "best.json"
TRIALS_FILE, ROWS_FILE = "trials.csv", "validation_rows.csv"
STUDY_NAME = "collabkit-tune"
# What must match for `resume=True` to continue a study: anything else scores trials differently.
IDENTITY = ("data", "fingerprint", "model", "split", "validation", "recipe", "fixed", "objective")

# Settings no rule tunes, with the reason: a shape or a speed choice, or fixed by the data.
NOT_TUNED = {
    "bs": "batch size: mostly a speed choice (give --space bs=LOW:HIGH to tune it)",
    "y_range": "set from the data's ratings",
    "levels": "set from the data's ratings",
    "emb_szs": "set from the data by fastai's rule",
    "layers": "a list of sizes (give it with -o layers=[...])",
    "ps": "a list, one per layer",
    "max_items": "a size limit, off by default",
    "keep": "draws kept for prediction: more is smoother, not a different model",
    "burn_in": "first sweeps discarded: tied to samples",
    "held_out": "the blend's own held-aside share for its weights",
}
# No trial is pruned before 80% of its schedule (steps are % of it; see PruneOnEpochs): a one-cycle
# loss halfway does not rank trials. On ML-100k u1, pruning from 50% cut the trial that ended best
# of 20 (dotbias lr 0.015, wd 0.84: validation RMSE 0.9089 against the recipe's 0.9100).
PRUNE_FROM = 80
# more is slower, not only different: searched from half to twice
EFFORT = ("epochs", "iterations", "samples")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float or int range (log-uniform with `log`) or a list of choices."""

    kind: Literal["float", "int", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The trial's value of this setting."""
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        low, high = float(self.low or 0), float(self.high or 0)
        if self.kind == "int":
            return trial.suggest_int(name, int(low), int(high), log=self.log)
        return trial.suggest_float(name, low, high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return float(self.low or 0) <= value <= float(self.high or 0)

    def describe(self) -> str:
        """`log 0.0005..0.05`, `3..12`, `one of None, 3, 4`."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{'log ' if self.log else ''}{self.low:g}..{self.high:g}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, (), False) or k == "kind"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dimension:
        return cls(
            data["kind"],
            data.get("low"),
            data.get("high"),
            bool(data.get("log")),
            tuple(data.get("choices", ())),
        )


def search_space(
    model: str, ratings: np.ndarray | None = None, recipe: str | None = None
) -> dict[str, Dimension]:
    """The default search space of a family, from its settings' declared defaults and ranges.

    A family trained by the Learner's epochs searches its recipe's lr and wd (log-uniform, a tenth
    to ten times the recipe's) and epochs (half to twice). Each setting follows `_dimension_of`:
    a positive float log-uniform over a tenth to ten times its default; an int (n_factors, k)
    log-uniform over a quarter to four times; epochs and iterations from half to twice; a choice
    (`Literal`, bool) over its values; `min_rating` over none and the ratings' levels (needs
    `ratings`); a dropout-like share from 0 to 0.5. All are clipped to the field's declared range.
    What no rule covers (see NOT_TUNED) is left at its default, unless `parse_space` adds it.
    """
    fam = family(model)
    space: dict[str, Dimension] = {}
    if fam.recipes:
        base = fam.recipes.get(recipe or "fast")
        if base is None:
            raise CollabkitError(f"unknown recipe {recipe!r}; expected one of: {', '.join(fam.recipes)}")
        space["lr"] = Dimension("float", base.lr / 10, base.lr * 10, log=True)
        if base.wd > 0:
            space["wd"] = Dimension("float", base.wd / 10, base.wd * 10, log=True)
        space["epochs"] = Dimension("int", max(1, math.ceil(base.epochs / 2)), base.epochs * 2)
    for name, info in fam.Settings.model_fields.items():
        dim = _dimension_of(name, info, ratings)
        if dim is not None:
            space[name] = dim
    return space


def _dimension_of(name: str, info: Any, ratings: np.ndarray | None) -> Dimension | None:
    """The rule for one settings field (a pydantic FieldInfo); None: not searched by default."""
    if name in NOT_TUNED:
        return None
    low, high = _bounds(info)
    default = None if info.is_required() else info.default
    if typing.get_origin(info.annotation) is Literal:
        return Dimension("choice", choices=typing.get_args(info.annotation))
    if info.annotation is bool:
        return Dimension("choice", choices=(False, True))
    if name == "min_rating":  # a threshold on the table's own rating scale
        if ratings is None or not len(ratings):
            return None
        levels = np.unique(ratings)
        if len(levels) > 10:
            levels = np.unique(np.round(np.quantile(ratings, [0.25, 0.5, 0.75]), 6))
        above = [float(v) for v in levels if v > levels.min()]  # the lowest keeps every rating: None
        return Dimension("choice", choices=(None, *above)) if above else None
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if info.annotation is int and default >= 1:
        step = 2 if name in EFFORT else 4
        first, last = max(math.ceil(default / step), low), min(default * step, high)
        return Dimension("int", math.ceil(first), math.floor(last), log=step == 4) if first < last else None
    if info.annotation is float and default > 0:
        lo, hi = max(default / 10, low), min(default * 10, high)
        return Dimension("float", lo, hi, log=True) if 0 < lo < hi else None
    if info.annotation is float and default == 0 and high <= 1:  # a share: dropout
        return Dimension("float", max(low, 0.0), min(high, 0.5))
    return None


def _bounds(info: Any) -> tuple[float, float]:
    """A field's declared range (an open end nudged inside); unbounded sides are +-inf."""
    low, high = -math.inf, math.inf
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = max(low, float(m.ge))  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Gt):
            low = max(low, math.nextafter(float(m.gt), math.inf))  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Le):
            high = min(high, float(m.le))  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Lt):
            high = min(high, math.nextafter(float(m.lt), -math.inf))  # type: ignore[arg-type]
    return low, high


def parse_space(
    model: str, texts: Mapping[str, str], space: Mapping[str, Dimension] | None = None
) -> dict[str, Dimension]:
    """`space` with each `KEY: "LOW:HIGH"` or `KEY: "A,B,C"` put in place of the default rule.

    KEY is one of the family's settings (or a recipe field: lr, wd, epochs, bs); LOW and HIGH are
    checked against its declared range. A range keeps the default rule's log scale, or is
    log-uniform when LOW > 0 and HIGH is at least ten times LOW.
    """
    fam = family(model)
    out = dict(space if space is not None else search_space(model))
    keys = [*fam.Settings.model_fields, *(RECIPE_FIELDS if fam.recipes else ())]
    for key, text in texts.items():
        if key not in keys:
            raise CollabkitError(
                f"--space {key}: {model} has no setting {key!r}; it takes: {', '.join(keys) or 'none'}"
            )
        info = fam.Settings.model_fields.get(key)
        is_int = key in ("bs", "epochs") if info is None else info.annotation is int
        lo_text, sep, hi_text = text.partition(":")
        if sep:
            try:
                low, high = float(lo_text), float(hi_text)
            except ValueError:
                raise CollabkitError(f"--space {key}={text}: LOW:HIGH must be two numbers") from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise CollabkitError(f"--space {key}={text}: needs finite LOW < HIGH")
            if is_int and not (low.is_integer() and high.is_integer()):
                raise CollabkitError(f"--space {key}={text}: {key} is a whole number; give whole LOW:HIGH")
            for value in (low, high):
                _check_value(model, key, int(value) if is_int else value)
            old = out.get(key)
            log = old.log if old is not None and old.kind != "choice" else low > 0 and high >= 10 * low
            out[key] = Dimension("int" if is_int else "float", low, high, log=log and low > 0)
        else:
            choices = tuple(_plain(part) for part in text.split(",") if part.strip())
            if not choices:
                raise CollabkitError(f"--space {key}={text!r}: give LOW:HIGH or choices A,B,C")
            for value in choices:
                _check_value(model, key, value)
            out[key] = Dimension("choice", choices=tuple(dict.fromkeys(choices)))
    return out


def _plain(text: str) -> Any:
    """A choice as typed: a number, true/false, none, or text."""
    text = text.strip()
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_value(model: str, key: str, value: Any) -> None:
    """Refuse a value the family's settings (or recipe) would refuse, naming the setting."""
    fam = family(model)
    if key in fam.Settings.model_fields:
        parse_settings(model, fam.Settings, {key: value})
    else:
        base = next(iter(fam.recipes.values())).model_dump()
        parse_recipe(model, {**base, key: value})


@dataclass(frozen=True)
class TuningRows:
    """Which rows tuning uses: the split's training rows, cut into a fitting and a scoring part.

    All are 0-based positions in the table as read; the split's held-out rows are in none of them.
    """

    split: SplitSpec
    validation: SplitSpec  # how the training rows were cut (its positions are within them)
    train_rows: np.ndarray
    fit_rows: np.ndarray
    valid_rows: np.ndarray
    n_heldout: int

    def describe(self) -> str:
        return (
            f"{len(self.fit_rows):,} rows fit each trial and {len(self.valid_rows):,} score it: a "
            f"{self.validation.describe()} part of split {self.split.describe()}'s {len(self.train_rows):,} "
            f"training rows; the split's {self.n_heldout:,} held-out rows are not used"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "training": len(self.train_rows),
            "fit": len(self.fit_rows),
            "validation": len(self.valid_rows),
            "heldout_unused": self.n_heldout,
            "how": self.describe(),
            "validation_rows": ROWS_FILE,
        }


def tuning_rows(table: pd.DataFrame, split: SplitSpec, validation: SplitSpec) -> TuningRows:
    """The split's training rows and the validation part carved from them (see `TuningRows`)."""
    if validation.kind in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        raise CollabkitError(
            f"a validation part cannot be ML-100k's {validation.kind}: it is cut from training rows"
        )
    train_rows, heldout = make_split(table, split)
    if len(train_rows) < 10:
        raise CollabkitError(
            f"split {split.describe()} leaves {len(train_rows)} training rows: too few to tune on"
        )
    inner = table.iloc[train_rows].reset_index(drop=True)
    fit, valid = make_split(inner, validation)
    if not len(fit) or not len(valid):
        raise CollabkitError(
            f"the validation part ({validation.describe()}) of {len(train_rows):,} training rows leaves "
            f"{len(fit):,} to fit and {len(valid):,} to score; both need rows"
        )
    return TuningRows(
        split, validation, train_rows, np.sort(train_rows[fit]), np.sort(train_rows[valid]), len(heldout)
    )


class PruneOnEpochs(Callback):
    """Reports a trial's epoch table to Optuna by how far through its one-cycle schedule it is, and
    stops the trial when Optuna's pruner says it is hopeless.

    Step s (10, 20, ..., 100) is the validation loss at the first epoch at or past s% of the
    schedule, so a 4-epoch and a 12-epoch trial are compared at the same point of their learning
    rate's cycle, not at the same epoch (epoch 1 of 12 is still warming up). A keep_best recipe
    fits twice (its choice of epochs on held-aside training rows, then every row): only the first,
    which runs the whole schedule, is reported.
    """

    order = 5

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.fits, self.epochs, self.reported = trial, 0, 0, 0

    def before_fit(self) -> None:
        self.fits += 1

    def after_epoch(self) -> None:
        if self.fits != 1:
            return
        self.epochs += 1
        total = self.learn.n_epoch
        loss = float(self.learn.history[-1].get("valid_loss", math.nan))
        where = f"after {self.epochs} of {total} epochs"
        if not math.isfinite(loss):
            self.trial.set_user_attr("note", f"pruned {where}: validation loss {loss}")
            raise optuna.TrialPruned()
        reached = self.epochs * 10 // total  # whole tenths of the schedule done
        for tenth in range(self.reported + 1, reached + 1):
            self.trial.report(loss, tenth * 10)
        self.reported = max(self.reported, reached)
        if self.trial.should_prune():
            self.trial.set_user_attr("note", f"pruned {where} (valid_loss {loss:.4f})")
            raise optuna.TrialPruned()


@dataclass
class TuneResult:
    """A finished (or stopped) search: the best trial, the configuration `train --config` takes."""

    model: str
    objective: str  # rmse (lower is better) or ndcg@10 (higher is better)
    direction: Literal["minimize", "maximize"]
    best_value: float
    best_trial: int
    best_params: dict[str, Any]
    config: dict[str, Any]  # best.json's "options": train's option names -> values
    trials: list[dict[str, Any]]  # the trials table (trials.csv)
    rows: dict[str, Any]  # which rows were tuned on (TuningRows.to_dict)
    seconds: float  # this call's
    out: str
    new_trials: int = 0  # trials run by this call (a resumed study had the others)
    counts: dict[str, int] = field(default_factory=dict)  # complete, pruned, failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_of(model: str) -> tuple[str, Literal["minimize", "maximize"]]:
    """What a family's trials are scored by: RMSE for ratings, NDCG@10 for ranking families."""
    return ("rmse", "minimize") if family(model).score_kind == "rating" else ("ndcg@10", "maximize")


def tune(
    table: pd.DataFrame,
    model: str,
    *,
    out: str | Path,
    split: SplitSpec | None = None,
    trials: int = 20,
    timeout: float | None = None,
    resume: bool = False,
    space: Mapping[str, str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    recipe: str | None = None,
    seed: int = 42,
    valid_pct: float = 0.1,
    device: str = "cpu",
    data_name: str = "table",
    reading: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
    pruner: optuna.pruners.BasePruner | None = None,
    enqueue: Sequence[Mapping[str, Any]] = (),
) -> TuneResult:
    """Search `model`'s settings on a validation part of `split`'s training rows; save the best.

    Args:
        trials: the study's total: a resumed study runs until it has this many finished trials
            (complete, pruned or failed for its settings).
        timeout: seconds after which no new trial starts (the running one finishes).
        resume: continue the study in `out` (refused if its data, split, model, validation part,
            recipe or fixed settings differ).
        space: `KEY: "LOW:HIGH"` or `"A,B,C"` in place of the default rule (see `parse_space`).
        fixed: settings (or recipe fields) every trial uses, left out of the space.
        valid_pct: the share of the training rows (a seeded random part) that scores the trials.
        pruner: Optuna's pruner for families trained by epochs (default: MedianPruner once 4 trials
            finished, from 80% of a trial's schedule on).
        enqueue: settings to try first; a new study first tries the family's defaults.

    Raises:
        CollabkitError: bad settings or space, an `out` that is not a collabkit tune folder (or is
            one, without `resume`), a resume that does not match, or no trial that finished.
    """
    started = time.perf_counter()
    out = Path(out)
    split = split if split is not None else SplitSpec()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise CollabkitError(f"trials must be a whole number, at least 1; got {trials!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
        raise CollabkitError(f"timeout must be a positive number of seconds; got {timeout!r}")
    if not 0 < valid_pct < 1:
        raise CollabkitError(f"the validation share must be between 0 and 1 (e.g. 0.1); got {valid_pct!r}")
    check_folder(out, resume)
    fam = family(model)
    objective, direction = objective_of(model)
    rows = tuning_rows(table, split, SplitSpec("random", valid_pct=valid_pct, seed=seed))
    search = _Search(
        model,
        recipe,
        seed,
        split,
        device,
        dict(fixed or {}),
        data_name,
        dict(reading or {}),
        rows,
        table_fingerprint(table),
        objective,
    )
    search.config(split, {}).check()  # the fixed settings and recipe, before a trial runs
    dims = search_space(model, table["rating"].to_numpy()[rows.train_rows], recipe)
    dims = {k: d for k, d in parse_space(model, dict(space or {}), dims).items() if k not in search.fixed}
    if not dims:
        raise CollabkitError(f"{model} has nothing to search (its settings: {fam.Settings.help_line()})")
    if resume:
        _check_same(out, search.identity())
    else:
        out.mkdir(parents=True, exist_ok=True)
        _write_rows(out / ROWS_FILE, table, rows.valid_rows)
    record = {
        "collabkit": "tune",
        "version": FORMAT,
        **search.identity(),
        "reading": search.reading,
        "seed": seed,
        "space": {k: d.to_dict() for k, d in dims.items()},
        "rows": rows.to_dict(),
    }
    write_atomic(out / TUNE_FILE, dumps(record, indent=1) + "\n")
    # the trials see the training rows only; `rows.validation` cuts them as `tuning_rows` did
    fit_table = table.iloc[rows.train_rows].reset_index(drop=True)
    with _quiet_optuna():
        study = optuna.create_study(
            storage=f"sqlite:///{(out / STUDY_FILE).resolve()}",
            study_name=STUDY_NAME,
            direction=direction,
            load_if_exists=resume,
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=PRUNE_FROM),
        )
        _fail_stale(study, log)
        # seeded, and after a resume seeded anew, so its first draws do not repeat the earlier ones
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
        done = sum(_counts(study).values())
        if not resume:
            defaults = _defaults(model, recipe, dims)
            for params in [*enqueue, *([defaults] if defaults is not None and not enqueue else [])]:
                study.enqueue_trial(dict(params), skip_if_exists=True)
        if log is not None:
            better = "lower" if direction == "minimize" else "higher"
            log(f"tuning {model} on {data_name}: {rows.describe()}")
            log(
                f"objective: {objective} on the {len(rows.valid_rows):,} validation rows ({better} is "
                "better); space: " + ", ".join(f"{k} {d.describe()}" for k, d in dims.items())
            )
            if resume:
                log(f"resuming the study in {out}: {done} of {trials} trials done")
        prune = direction == "minimize" and fam.trains_by_gradient

        def run_trial(trial: optuna.Trial) -> float:
            values = {**search.fixed, **{name: dim.suggest(trial, name) for name, dim in dims.items()}}
            cbs = [PruneOnEpochs(trial)] if prune else []
            try:
                result = train(
                    fit_table,
                    search.config(rows.validation, values),
                    data_name=data_name,
                    log=None,
                    ranking_k=None if objective == "rmse" else 10,
                    callbacks=cbs,
                )
            except CollabkitError as e:  # these settings cannot train (diverged, a threshold too high)
                trial.set_user_attr("note", f"failed: {e}")
                raise
            metrics = result.valid if objective == "rmse" else (result.ranking or {}).get("metrics", {})
            value = metrics.get(objective)
            if value is None or not math.isfinite(value):
                trial.set_user_attr("note", f"failed: the trial's {objective} is {value}")
                raise CollabkitError(f"the trial's {objective} is {value}")
            return float(value)

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            search.save(out, study)
            if log is not None:
                log(_trial_line(study, trial, trials, objective))

        left = max(0, trials - done)
        if left == 0 and log is not None:
            log(f"the study already has {done} trials (--trials {trials}); give more to search further")
        before = len(study.trials)
        if left:
            study.optimize(
                run_trial, n_trials=left, timeout=timeout, catch=(CollabkitError,), callbacks=[after_trial]
            )
        search.save(out, study)
    best = _best(study)
    if best is None:
        notes = [t.user_attrs["note"] for t in study.trials if t.user_attrs.get("note")]
        last = f"; the last: {notes[-1]}" if notes else ""
        raise CollabkitError(f"no trial of {model} finished ({len(study.trials)} tried){last}")
    return TuneResult(
        model=model,
        objective=objective,
        direction=direction,
        best_value=float(best.value or 0.0),
        best_trial=best.number,
        best_params=dict(best.params),
        config=search.options(best.params),
        trials=[
            {str(k): v for k, v in row.items()} for row in trials_table(study, objective).to_dict("records")
        ],
        rows=rows.to_dict(),
        seconds=time.perf_counter() - started,
        out=str(out),
        new_trials=len(study.trials) - before,
        counts=_counts(study),
    )


@dataclass(frozen=True)
class _Search:
    """What every trial of one study shares: the family, the fixed settings, the data and rows."""

    model: str
    recipe: str | None
    seed: int
    split: SplitSpec  # the split whose training rows are tuned on
    device: str
    fixed: dict[str, Any]
    data_name: str
    reading: dict[str, Any]
    rows: TuningRows
    fingerprint: str
    objective: str

    def identity(self) -> dict[str, Any]:
        """What must match for a resume to continue the study (see IDENTITY)."""
        return {
            "data": self.data_name,
            "fingerprint": self.fingerprint,
            "model": self.model,
            "split": self.split.to_dict(),
            "validation": self.rows.validation.to_dict(),
            "recipe": self.recipe,
            "fixed": self.fixed,
            "objective": self.objective,
        }

    def config(self, split: SplitSpec, values: Mapping[str, Any]) -> TrainConfig:
        """The TrainConfig of some settings (recipe fields apart, for a family with recipes)."""
        has_recipes = bool(family(self.model).recipes)
        merged = {**self.fixed, **values}
        fields = {k: v for k, v in merged.items() if has_recipes and k in RECIPE_FIELDS}
        settings = {k: v for k, v in merged.items() if k not in fields}
        return TrainConfig(
            model=self.model,
            recipe=self.recipe,
            settings=settings,
            split=split,
            seed=self.seed,
            device=self.device,
            **fields,
        )

    def options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """best.json's "options": `collabkit train`'s option names and the values to train with."""
        config = self.config(self.split, values)
        reading = {k: v for k, v in self.reading.items() if k != "path"}
        s = self.split
        options: dict[str, Any] = {
            "data": self.reading.get("path") or self.data_name,
            **reading,
            "model": self.model,
            "split": s.kind,
            "valid_pct": s.valid_pct,
            "fold": s.fold,
            "k": s.k,
            "last_n": s.last_n,
            "cutoff": s.cutoff,
            "seed": self.seed,
        }
        if self.recipe is not None:
            options["recipe"] = self.recipe
        options |= {k: getattr(config, k) for k in RECIPE_FIELDS if getattr(config, k) is not None}
        options["settings"] = dict(config.settings)
        return options

    def save(self, out: Path, study: optuna.Study) -> None:
        """trials.csv and best.json, each written whole (a reader never sees half of one)."""
        write_atomic(out / TRIALS_FILE, trials_table(study, self.objective).to_csv(index=False))
        best = _best(study)
        if best is None:
            return
        tuned = {
            "trial": best.number,
            self.objective: best.value,
            "trials": len(study.trials),
            "study": STUDY_FILE,
            "data": self.data_name,
            "fingerprint": self.fingerprint,
            "split": self.split.to_dict(),
            "rows": self.rows.to_dict(),
        }
        doc = {
            "collabkit": "config",
            "version": FORMAT,
            "command": "train",
            "options": self.options(best.params),
            "tuned": tuned,
        }
        write_atomic(out / BEST_FILE, dumps(doc, indent=1) + "\n")


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own log (study created, trial finished or failed) off: collabkit prints one line a trial."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _defaults(model: str, recipe: str | None, dims: Mapping[str, Dimension]) -> dict[str, Any] | None:
    """The family's defaults for the searched settings (its first trial), None if outside the space."""
    fam = family(model)
    base = fam.recipes[recipe or "fast"].model_dump() if fam.recipes else {}
    values = {}
    for name in dims:
        info = fam.Settings.model_fields.get(name)
        values[name] = base.get(name) if info is None else info.default
    ok = all(dims[k].contains(v) for k, v in values.items())
    return values if ok else None


def _fail_stale(study: optuna.Study, log: Callable[[str], None] | None) -> None:
    """Trials left running by a tune that was stopped (Ctrl-C, killed) are marked failed."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if log is not None:
            log(f"trial {t.number} was left running by a stopped tune: marked failed, not counted")


def _counts(study: optuna.Study) -> dict[str, int]:
    """Finished trials by state: complete, pruned, and failed for their settings (interrupted ones not)."""
    s = optuna.trial.TrialState
    out = {"complete": 0, "pruned": 0, "failed": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == s.COMPLETE:
            out["complete"] += 1
        elif t.state == s.PRUNED:
            out["pruned"] += 1
        elif t.state == s.FAIL and "note" in t.user_attrs:
            out["failed"] += 1
    return out


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return study.best_trial if complete else None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial, total: int, objective: str) -> str:
    """`[4/20] trial 3  lr 0.0031 wd 0.087 n_factors 87  rmse 0.9231  best 0.9120 (trial 1)  6.2 s`."""
    params = " ".join(f"{k} {_fmt(v)}" for k, v in trial.params.items())
    if trial.state == optuna.trial.TrialState.COMPLETE:
        outcome = f"{objective} {trial.value:.4f}"
    else:
        outcome = str(trial.user_attrs.get("note") or trial.state.name.lower())
    best = _best(study)
    shown = f"best {best.value:.4f} (trial {best.number})" if best is not None else "no best yet"
    took = _seconds(trial)
    return f"[{trial.number + 1}/{total}] trial {trial.number}  {params}  {outcome}  {shown}  {took:.1f} s"


def trials_table(study: optuna.Study, objective: str) -> pd.DataFrame:
    """One row a trial: number, state, objective value, each setting, seconds, note."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None  # a pruned one's is a loss
        rows.append({"trial": t.number, "state": t.state.name.lower(), objective: value, **t.params,
                     "seconds": _seconds(t), "note": t.user_attrs.get("note", "")})  # fmt: skip
    return pd.DataFrame(rows)


def _seconds(trial: optuna.trial.FrozenTrial) -> float:
    start, end = trial.datetime_start, trial.datetime_complete
    return (end - start).total_seconds() if start is not None and end is not None else math.nan


def _write_rows(path: Path, table: pd.DataFrame, positions: np.ndarray) -> None:
    part = pd.DataFrame(
        {
            "row": positions,
            "user": table["user"].to_numpy()[positions],
            "item": table["item"].to_numpy()[positions],
        }
    )
    write_atomic(path, part.to_csv(index=False))


def check_folder(out: Path, resume: bool) -> None:
    """Refuse an `out` collabkit may not write a tune into, or (with `resume`) one with no tune."""
    check_own_folder(out, "the tune", "runs/tune")
    ours = _is_tune_folder(out)
    if resume:
        if not ours:
            raise CollabkitError(f"{out} holds no collabkit tune ({TUNE_FILE}); nothing to resume")
        if not (out / STUDY_FILE).is_file():
            raise CollabkitError(f"{out} has no {STUDY_FILE}: its study was never started or was removed")
    elif out.is_dir() and any(out.iterdir()):
        if ours:
            raise CollabkitError(
                f"{out} holds a collabkit tune already; add --resume to continue it, or choose a new --out"
            )
        raise CollabkitError(
            f"{out} exists and is not a collabkit tune folder; refusing to write into it (choose a new or "
            "empty folder)"
        )


def _is_tune_folder(out: Path) -> bool:
    try:
        doc = json.loads((out / TUNE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("collabkit") == "tune"


def _check_same(out: Path, identity: Mapping[str, Any]) -> None:
    """Refuse a resume that would score trials on other data, rows, model or fixed settings."""
    recorded = json.loads((out / TUNE_FILE).read_text(encoding="utf-8"))
    for key in IDENTITY:
        if recorded.get(key) != json.loads(dumps(identity[key])):
            was, now = _shown(key, recorded.get(key)), _shown(key, identity[key])
            raise CollabkitError(
                f"{out} tunes with {key} {was}, this run asks for {now}: a resumed tune keeps its data, "
                "split, model, validation part, recipe and fixed settings (choose a new --out to tune these)"
            )


def _shown(key: str, value: Any) -> str:
    if key in ("split", "validation") and isinstance(value, dict):
        return SplitSpec.from_dict(value).describe()
    return json.dumps(value)


# -- the configuration file `collabkit train --config` reads ------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """A configuration file: train's options by name, and (from a tune) what it was tuned on."""

    path: Path
    options: dict[str, Any]
    tuned: dict[str, Any] | None


def read_config(path: str | Path, allowed: Sequence[str]) -> ConfigFile:
    """The options of a configuration file (best.json), or one line naming the file and the fault."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CollabkitError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise CollabkitError(f"--config {path}: is a folder; give its best.json") from None
    except json.JSONDecodeError as e:
        raise CollabkitError(
            f"--config {path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except UnicodeError:
        raise CollabkitError(f"--config {path}: not a UTF-8 text file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("options"), dict):
        raise CollabkitError(
            f'--config {path}: expected a JSON object with "options" (as collabkit tune writes)'
        )
    if doc.get("version", FORMAT) != FORMAT:
        raise CollabkitError(
            f"--config {path}: format version {doc.get('version')!r}; this collabkit reads {FORMAT}"
        )
    options = dict(doc["options"])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise CollabkitError(
            f"--config {path}: unknown option {unknown[0]!r}; it may hold: {', '.join(allowed)}"
        )
    if not isinstance(options.get("settings", {}), dict):
        raise CollabkitError(f'--config {path}: "settings" must be an object, e.g. {{"n_factors": 64}}')
    tuned = doc.get("tuned")
    if tuned is not None and not (isinstance(tuned, dict) and isinstance(tuned.get("split"), dict)):
        raise CollabkitError(f'--config {path}: "tuned" must record the split it was tuned on')
    return ConfigFile(path, options, tuned)


def check_tuned_rows(config: ConfigFile, table: pd.DataFrame, split: SplitSpec) -> str:
    """A line saying the settings were not tuned on `split`'s held-out rows; an error if they were.

    Tuning read the training rows of the split it was given: a held-out row among them would
    flatter the figures (ML-100k's u1.base is the union of the test parts of u2..u5).
    """
    tuned = config.tuned
    if tuned is None:
        return f"settings from {config.path}"
    spec = SplitSpec.from_dict(tuned["split"])
    if tuned.get("fingerprint") != table_fingerprint(table):
        return (
            f"settings from {config.path}, tuned on another table ({tuned.get('data')}): whether these "
            "held-out rows were among its training rows cannot be checked"
        )
    tuned_rows, _ = make_split(table, spec)
    _, heldout = make_split(table, split)
    seen = int(np.isin(heldout, tuned_rows).sum())
    if seen:
        raise CollabkitError(
            f"{config.path} was tuned on the training rows of split {spec.describe()}, and {seen:,} of "
            f"the {len(heldout):,} held-out rows of split {split.describe()} are among them: its figures "
            f"would be flattered. Tune on that split's own training rows (collabkit tune --split "
            f"{split.kind} ...), or use split {spec.describe()}"
        )
    return (
        f"settings from {config.path}, tuned on split {spec.describe()}'s training rows: none of the "
        f"{len(heldout):,} held-out rows here was among them"
    )
