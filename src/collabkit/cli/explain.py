"""`collabkit interpret`: what a trained model says (biases, embedding map, neighbours)."""

from __future__ import annotations

from collabkit.cli.app import app  # noqa: F401
