"""Atomic file writes: the one place collabkit writes a file that must never be half-written.

A file is written beside its destination under a temporary name, flushed to disk and renamed over
the destination; the folder is then fsynced so the rename itself survives a power cut. A reader
sees the old file or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: POSIX has no other way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: Path, *, folder: bool = False) -> None:
    """Give a file (0666) or folder (0777) the mode the user's umask asks for.

    mkstemp and mkdtemp create private (0600/0700) paths, which suit a temporary file but not the
    model or report it becomes: a web server or service running as another user must read them.
    """
    path.chmod((0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """A temporary path beside `dest` to write to; renamed onto `dest` if the block succeeds.

    On any error (or Ctrl-C) the temporary file is removed and `dest` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        public_mode(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(dest: str | Path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write `data` (bytes, or text in `encoding`) to `dest` atomically."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(dest) as tmp:
        tmp.write_bytes(payload)
    return Path(dest)


def write_with(dest: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call `writer(tmp_path)` and move the result onto `dest` atomically (for library writers)."""
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)
