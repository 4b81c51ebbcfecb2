"""`collabkit recommend | similar`: a trained model in use."""

from __future__ import annotations

from collabkit.cli.app import app  # noqa: F401
