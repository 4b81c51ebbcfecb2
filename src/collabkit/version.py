"""The package version, in a module that imports nothing (the command prints it without loading torch)."""

__version__ = "0.1.0"
