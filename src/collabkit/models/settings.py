"""Typed settings of a model family, and the training recipes of the families trained by gradient.

Each family file declares `class Settings(FamilySettings)` with its defaults and allowed ranges,
and, when the Learner's loop trains it, `recipes = {"fast": Recipe(...), "chapter": Recipe(...)}`.
pydantic checks types and ranges and round-trips the settings through JSON; `parse_settings` turns
its error report into one line naming the family and the settings it takes.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collabkit.errors import CollabkitError

# Sizes past these are a typo, not a model: they would allocate terabytes before anything checks.
MAX_FACTORS = 100_000
MAX_BATCH = 100_000_000
MAX_EPOCHS = 100_000
HELP_LINE = 360  # characters of a settings list in an error line (the command shows 500 at most)


class FamilySettings(BaseModel):
    """Base of every family's settings: frozen, unknown keys refused, defaults validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @classmethod
    def help_line(cls) -> str:
        """`name=default (description)` for every setting: what an error lists as allowed. Where
        that passes `HELP_LINE` characters (an error is one line), names and defaults only."""
        parts, short = [], []
        for name, f in cls.model_fields.items():
            default = "from the data" if f.default is None and not f.is_required() else f.default
            if f.is_required():
                default = "required"
            parts.append(f"{name}={default} ({f.description})" if f.description else f"{name}={default}")
            short.append(f"{name}={default}")
        line = "; ".join(parts)
        return (line if len(line) <= HELP_LINE else "; ".join(short)) or "none"

    def used(self) -> dict[str, Any]:
        """The settings as JSON values (tuples as lists), for config.json and reports."""
        return self.model_dump(mode="json")


class Recipe(BaseModel):
    """Batch size, epochs, peak learning rate and weight decay of a one-cycle run.

    `keep_best`: hold out a tenth of the training rows (never the test rows) and keep the epoch
    with the lowest loss on them, instead of the last epoch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bs: int = Field(ge=1, le=MAX_BATCH, description="batch size")
    epochs: int = Field(ge=1, le=MAX_EPOCHS, description="epochs")
    lr: float = Field(gt=0, description="peak one-cycle learning rate")
    wd: float = Field(ge=0, description="decoupled weight decay")
    keep_best: bool = Field(False, description="keep the best epoch on a tenth of the training rows")


CHAPTER = Recipe(bs=64, epochs=5, lr=5e-3, wd=0.1)  # fastbook chapter 8's settings
RECIPE_FIELDS = ("bs", "epochs", "lr", "wd")


def parse_settings(family: str, cls: type[FamilySettings], values: dict[str, Any]) -> FamilySettings:
    """`values` checked against the family's settings class, or one CollabkitError line."""
    try:
        return cls(**values)
    except ValidationError as e:
        unknown = any(err.get("type") == "extra_forbidden" for err in e.errors())
        takes = f"; it takes: {cls.help_line()}" if unknown else ""
        raise CollabkitError(f"{family}: {describe_errors(e)}{takes}") from None
    except TypeError as e:  # e.g. a non-string key
        raise CollabkitError(f"{family}: bad settings ({e})") from None


RECIPE_ERRORS = {
    "bs": "batch size must be a whole number from 1 to {high:,}",
    "epochs": "epochs must be a whole number from 1 to {high:,}",
    "lr": "learning rate must be a positive number (a negative one trains uphill)",
    "wd": "weight decay must be 0 or more (a negative one grows the weights)",
}


def parse_recipe(family: str, values: dict[str, Any]) -> Recipe:
    """A recipe from `values`, or one CollabkitError line saying which setting is wrong and why."""
    try:
        return Recipe(**values)
    except ValidationError as e:
        err = e.errors()[0]
        key = str((err.get("loc") or ("?",))[0])
        if key in RECIPE_ERRORS:
            high = MAX_BATCH if key == "bs" else MAX_EPOCHS
            raise CollabkitError(
                f"{RECIPE_ERRORS[key].format(high=high)}, got {err.get('input')!r}"
            ) from None
        raise CollabkitError(f"{family}: {describe_errors(e)}") from None


def describe_errors(e: ValidationError) -> str:
    """pydantic's report as one phrase per error: `setting 'k'=0: Input should be >= 1`."""
    out = []
    for err in e.errors():
        loc = err.get("loc") or ("?",)
        name = str(loc[0])
        if err.get("type") == "extra_forbidden":
            out.append(f"unknown setting {name!r}")
            continue
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        where = ".".join(str(p) for p in loc)
        if isinstance(value, float) and not math.isfinite(value):
            out.append(f"setting {where}={shown} must be a finite number")
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            out.append(f"setting {where}={shown}: {msg}")
    return "; ".join(out)


def output_range(lo: float, hi: float) -> tuple[float, float]:
    """The output range a rating model gets from ratings lo..hi: room at the top, as the chapter's
    (0, 5.5) for 1..5 (and below the bottom where ratings go negative)."""
    span = max(hi - lo, 1.0)
    return (0.0 if lo >= 0 else lo - 0.1 * span, hi * 1.1 if hi > 0 else hi + 0.1 * span)


def check_y_range(value: tuple[float, float] | None) -> tuple[float, float] | None:
    """A pydantic validator body: (low, high) with low < high, or None."""
    if value is None:
        return None
    lo, hi = (float(v) for v in value)
    if not lo < hi:
        raise ValueError(f"y_range must be (low, high) with low < high, got ({lo:g}, {hi:g})")
    return (lo, hi)
