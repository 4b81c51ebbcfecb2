"""The `collabkit` command. Each module adds its subcommands to the one Typer app.

Nothing heavy is imported here or at the top of the command modules (torch, pandas, the service
load inside the commands that use them), so `collabkit --help` answers at once; a Ctrl-C at any
moment, these imports included, is one line and exit 130, never a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("collabkit: interrupted\n")
    raise SystemExit(130)  # 128 + SIGINT; SystemExit leaves an import without a traceback


# While the command's own modules import, Ctrl-C exits quietly; the previous handler comes back
# after, so a running command sees KeyboardInterrupt as usual (checkpoints are written on it).
_main_thread = threading.current_thread() is threading.main_thread()
_previous = signal.getsignal(signal.SIGINT) if _main_thread else None
if _main_thread:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
try:
    from collabkit.cli import core, explain, serve, tune, use  # noqa: F401, E402  (each registers its subcommands)
    from collabkit.cli.app import EXIT_INTERRUPTED, app  # noqa: E402
finally:
    if _main_thread:
        signal.signal(signal.SIGINT, _previous)

__all__ = ["app", "main"]


def main() -> None:
    """The console script: the command, with an interrupt anywhere said in one line."""
    try:
        app(prog_name="collabkit")
    except KeyboardInterrupt:  # outside a command's own handler: while click parses, say
        sys.stderr.write("collabkit: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
