"""The `collabkit` command. Each module adds its subcommands to the one Typer app."""

from collabkit.cli import core  # noqa: F401  (registers train, evaluate, crossval, predict)
from collabkit.cli.app import app

__all__ = ["app"]
