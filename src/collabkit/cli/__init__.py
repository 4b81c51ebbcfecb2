"""The `collabkit` command. Each module adds its subcommands to the one Typer app."""

from collabkit.cli import core, explain, serve, use  # noqa: F401  (each registers its subcommands)
from collabkit.cli.app import app

__all__ = ["app"]
