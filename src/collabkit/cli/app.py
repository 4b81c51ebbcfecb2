"""Shared pieces of the `collabkit` command: the app, error handling, JSON output, common options."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from collabkit.errors import CollabkitError
from collabkit.jsonable import dumps
from collabkit.version import __version__

if TYPE_CHECKING:
    from collabkit.data.splits import SplitSpec

app = typer.Typer(
    help="Collaborative filtering on PyTorch: train, evaluate and use recommendation models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"collabkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print collabkit's version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Collaborative filtering on PyTorch: train, evaluate and use recommendation models."""


EXIT_USER = 2  # bad input, a file or folder the user named, the machine's disk or permissions
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in collabkit
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

# How an OSError reads for a person, by errno; the path is put in front.
_OS_WORDS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.EISDIR: "is a folder where a file was expected",
    errno.ENOTDIR: "a part of this path is a file where a folder was expected",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many symbolic links (a link loop?)",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error (a failing disk or network file system?)",
}


def _one_line(text: object, limit: int = 500) -> str:
    """Any message flattened to one line, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _fail(message: str, code: int) -> typer.Exit:
    if os.environ.get("COLLABKIT_DEBUG", "").strip() not in {"", "0"}:
        traceback.print_exc(file=sys.stderr)
    typer.echo(_one_line(message), err=True)
    return typer.Exit(code)


def describe_os_error(e: OSError) -> str:
    """An OSError in words a person can act on, with the path(s) it names."""
    if e.errno == errno.EPIPE:
        return "the output was closed before collabkit finished writing (broken pipe)"
    words = _OS_WORDS.get(e.errno or -1) or (e.strerror or type(e).__name__).lower()
    if e.errno == errno.EEXIST and e.filename is not None and os.path.isfile(e.filename):
        words = "is a file where a folder was expected"  # mkdir of a path whose part is a file
    paths = [_shown_path(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {words}" if paths else f"{words} ({_one_line(e, 200)})"


def _shown_path(path: object) -> str:
    """The path to show: a temporary `.NAME.XXXX.tmp` beside a destination is shown as the destination,
    which is the path the user gave."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    head, name = os.path.split(text)
    found = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{6,}\.(?:tmp|part)", name)
    return os.path.join(head, found.group(1)) if found else text


def _caused_by_interrupt(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind `error` (Python wraps one raised in some hooks, such
    as `__set_name__` while a module imports, in a RuntimeError)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def clean_errors() -> Iterator[None]:
    """Every failure ends in one line on stderr and a non-zero exit, never a traceback.

    Exit 2: bad input or settings, and faults of files, folders, disk and permissions (each worded
    with its path); 130: Ctrl-C; 70: an internal error of collabkit, with where to report it.
    `COLLABKIT_DEBUG=1` prints the traceback first.
    """
    try:
        yield
    except (typer.Exit, click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
        raise  # typer/click's own: a chosen exit, or a usage error click words itself
    except KeyboardInterrupt:
        raise _fail("collabkit: interrupted", EXIT_INTERRUPTED) from None
    except CollabkitError as e:
        raise _fail(f"collabkit: error: {e}", EXIT_USER) from None
    except OSError as e:
        if e.errno == errno.EPIPE:
            with contextlib.suppress(OSError):  # nothing more can reach a closed pipe
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _fail(f"collabkit: error: {describe_os_error(e)}", EXIT_USER) from None
    except json.JSONDecodeError as e:
        raise _fail(
            f"collabkit: error: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", EXIT_USER
        ) from None
    except UnicodeError as e:
        raise _fail(
            f"collabkit: error: a file is not text in the expected encoding ({e})", EXIT_USER
        ) from None
    except MemoryError:
        raise _fail(
            "collabkit: error: out of memory; try a smaller --bs, fewer factors or a smaller table", EXIT_USER
        ) from None
    except Exception as e:
        if _caused_by_interrupt(e):  # Ctrl-C inside a class body's __set_name__ comes wrapped
            raise _fail("collabkit: interrupted", EXIT_INTERRUPTED) from None
        if _is_safetensors_error(e):
            raise _fail(
                f"collabkit: error: a weights file is damaged or not safetensors ({e})", EXIT_USER
            ) from None
        raise _fail(
            f"collabkit: internal error: {type(e).__name__}: {_one_line(e, 300)}; this is a bug in "
            "collabkit, not in your input: run the command again with COLLABKIT_DEBUG=1 to see the "
            "traceback, and keep it with the command you ran",
            EXIT_INTERNAL,
        ) from None


def _is_safetensors_error(e: BaseException) -> bool:
    return type(e).__name__ == "SafetensorError" or type(e).__module__.startswith("safetensors")


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print `result` as JSON on stdout when asked: always valid JSON (non-finite numbers as null)."""
    if as_json:
        typer.echo(dumps(result, indent=1, ensure_ascii=True))


# Options shared by the commands that read a table.
DataOpt = Annotated[
    str, typer.Option("--data", help="A MovieLens name (ml-100k, ml-1m, ...) or a CSV/TSV/Parquet path.")
]
UserCol = Annotated[str, typer.Option("--user-col", help="User column of a file.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="Item column of a file.")]
RatingCol = Annotated[str, typer.Option("--rating-col", help="Rating column of a file.")]
DuplicatesOpt = Annotated[
    str,
    typer.Option(
        "--duplicates",
        help="A (user, item) pair rated on several rows: error (refuse the file), last (keep the latest "
        "rating) or mean (average them).",
    ),
]
TimeCol = Annotated[
    str | None, typer.Option("--timestamp-col", help="Timestamp column of a file (time splits).")
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        help="random | u1..u5 | ua | ub (ML-100k's canonical splits) | kfold "
        "| last (each user's latest --last-n) | recent (each user's latest --valid-pct) "
        "| time (a cut-off).",
    ),
]
ValidPct = Annotated[float, typer.Option("--valid-pct", help="Share held out by random and time splits.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the split, initialisation and shuffling.")]
FoldOpt = Annotated[int, typer.Option("--fold", help="Which fold is held out, with --split kfold (0-based).")]
KOpt = Annotated[int, typer.Option("--k", help="Number of folds, with --split kfold.")]
LastN = Annotated[int, typer.Option("--last-n", help="Ratings per user held out, with --split last.")]
Cutoff = Annotated[
    float | None,
    typer.Option("--cutoff", help="Timestamp from which ratings are held out (--split time); default: none, "
                 "the latest --valid-pct."),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
MinCount = Annotated[
    int,
    typer.Option(
        "--min-count",
        help="Only items (and users) with at least this many training ratings: by default 10, so "
        "one-rating items stay out of neighbour lists; 1 for every trained item.",
    ),
]


def split_spec(
    split: str,
    valid_pct: float = 0.2,
    seed: int = 42,
    fold: int = 0,
    k: int = 5,
    last_n: int = 1,
    cutoff: float | None = None,
) -> SplitSpec:
    """The split the command's split options describe (validated)."""
    for name, value in (("--valid-pct", valid_pct), ("--cutoff", cutoff)):
        if value is not None and not math.isfinite(value):
            raise CollabkitError(f"{name} must be a finite number, got {value}")
    from collabkit.data.splits import SplitSpec  # lazy: pandas loads only for commands that read data

    return SplitSpec(split, valid_pct, seed, fold, k, last_n, cutoff)
