"""`--config FILE` of `collabkit train` and `crossval`: a configuration file's options (what
`collabkit tune` writes as best.json) for those not typed on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from collabkit.errors import CollabkitError

# The options a configuration file may hold: train's parameter names ("settings": its -o values).
MODEL_KEYS = ("recipe", "factors", "layers", "epochs", "lr", "wd", "bs", "y_range", "settings")
READING_KEYS = ("user_col", "item_col", "rating_col", "timestamp_col", "duplicates")
SPLIT_KEYS = ("split", "valid_pct", "fold", "k", "last_n", "cutoff")
TRAIN_CONFIG_KEYS = (
    "data",
    "task",
    "model",
    *MODEL_KEYS,
    *SPLIT_KEYS,
    "seed",
    "device",
    "step",
    *READING_KEYS,
)
# crossval cuts its own folds (--folds, --k): a file's split is not used there
CROSSVAL_CONFIG_KEYS = ("data", "model", *MODEL_KEYS, "seed", *READING_KEYS)
NAMED_SETTINGS = {"factors": "n_factors", "layers": "layers", "y_range": "y_range"}  # flag -> setting


def config_values(
    ctx: typer.Context, path: Path, allowed: tuple[str, ...], use: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], Any, str | None]:
    """The file's options (those in `use`, default all) not typed on the command line, as the
    command's own values.

    Returns (values by parameter name, the ConfigFile, a note or None). The file's "settings" come
    back as -o strings under "option", after those typed (a key typed wins). With another --model
    typed, the file's model settings are not used (said in the note).
    """
    # lazy: Optuna and the training stack load only for the command that uses them
    from collabkit.tuning import read_config

    config = read_config(path, allowed)
    typed = {key for key in ctx.params if _typed(ctx, key)}
    file = {key: v for key, v in config.options.items() if use is None or key in use}
    note = None
    if "model" in typed and file.get("model") not in (None, ctx.params["model"]):
        note = (
            f"model: {ctx.params['model']}, as given ({path} is of {file['model']}: its settings are not "
            "used)"
        )
        file = {key: v for key, v in file.items() if key not in MODEL_KEYS}
    params = {p.name: p for p in ctx.command.params if p.name}
    values: dict[str, Any] = {}
    for key, value in file.items():
        if key == "settings" or key in typed:
            continue
        try:
            values[key] = None if value is None else params[key].process_value(ctx, value)
        except typer.BadParameter as e:  # typer's own click: a value of the wrong type
            raise CollabkitError(f"--config {path}: option {key!r}: {e.message}") from None
    typed_settings = {text.partition("=")[0].strip() for text in ctx.params.get("option") or []}
    typed_settings |= {NAMED_SETTINGS[key] for key in NAMED_SETTINGS if key in typed}
    settings = file.get("settings") or {}
    extra = [f"{key}={json.dumps(v)}" for key, v in settings.items() if key not in typed_settings]
    if extra:
        values["option"] = [*(ctx.params.get("option") or []), *extra]
    return values, config, note


def _typed(ctx: typer.Context, key: str) -> bool:
    source = ctx.get_parameter_source(key)  # typer's click enum: compared by name
    return source is not None and source.name == "COMMANDLINE"
