"""`python -m collabkit`: the same as the `collabkit` command."""

from collabkit.cli import app

app(prog_name="collabkit")
