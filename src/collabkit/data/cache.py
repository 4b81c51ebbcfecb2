"""Cache files collabkit can trust: each written atomically with a small record, checked on use.

A cached file (an extracted ratings file, a parsed table as Parquet) gets a manifest beside it: its
sha256, size, modification time and row count. On use, size and mtime are compared first (free), and
the file is hashed only when they differ; Parquet pages also carry CRCs that the reader verifies.
A file that fails the check is reported in one line on stderr and rebuilt from its source. A cache
folder that cannot be written (read-only, full, no permission) only costs speed: one warning, and
the data is read from its source without caching. Nothing here is ever an error of its own.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from collabkit.atomic import write_atomic, write_with
from collabkit.checksum import file_sha256

MANIFEST_SUFFIX = ".manifest.json"
# Errors that mean "this folder cannot be written", as opposed to a damaged file or a bug.
UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def say(message: str) -> None:
    """One line on stderr (stdout stays clean for --json output)."""
    print(f"collabkit: {message}", file=sys.stderr, flush=True)


def is_unwritable(exc: BaseException) -> bool:
    """Whether `exc` says a folder cannot be written (read-only, full, no permission)."""
    return isinstance(exc, OSError) and exc.errno in UNWRITABLE


def count_lines(path: Path) -> int:
    """Lines in a text file (a last line without a newline counts)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def file_record(path: Path, rows: int | None = None, digest: str | None = None) -> dict[str, Any]:
    """What a manifest keeps of a file: sha256, size, mtime (ns) and optionally its row count."""
    st = path.stat()
    return {
        "sha256": digest or file_sha256(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "rows": rows,
    }


def check_record(path: Path, record: Mapping[str, Any]) -> str | None:
    """None if `path` still is the file `record` describes; else what differs, in words."""
    try:
        st = path.stat()
        if st.st_size != record["size"]:
            return f"{st.st_size:,} bytes where {record['size']:,} were written"
        if st.st_mtime_ns == record["mtime_ns"]:
            return None
        got = file_sha256(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    except (KeyError, TypeError):
        return "its record is damaged"
    return None if got == record["sha256"] else f"sha256 {got[:12]}... where {str(record['sha256'])[:12]}..."


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The JSON record at `path`; None if there is none; {} if it is there but unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_manifest(path: Path, doc: Mapping[str, Any]) -> None:
    write_atomic(path, json.dumps(doc, indent=1) + "\n")
    os.chmod(path, 0o644)  # mkstemp makes it private; the cache may be shared


def read_parquet_cache(path: Path, source: str, rows: int | None = None) -> pd.DataFrame | None:
    """The table cached at `path` if it is whole; None when it must be (re)built from `source`.

    A missing file or record means "not cached" (quietly); a file that fails its record, its page
    CRCs, or the expected row count is reported on stderr once, then rebuilt by the caller.
    """
    if not path.exists():
        return None
    record = read_manifest(manifest_path(path))
    if record is None:  # written by an older collabkit, or the record never landed: build again
        return None
    problem = check_record(path, record)
    if problem is None:
        try:
            table = pd.read_parquet(path, page_checksum_verification=True)
        except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ... for a damaged file
            problem = f"unreadable: {' '.join(str(e).split())[:120]}"
        else:
            want = record.get("rows") if rows is None else rows
            if want is not None and len(table) != want:
                problem = f"{len(table):,} rows where {want:,} were written"
            else:
                return table
    say(f"the cached table {path} is damaged ({problem}); rebuilding it from {source}")
    return None


def write_parquet_cache(table: pd.DataFrame, path: Path) -> bool:
    """Cache `table` at `path` (atomically, with page CRCs and a record); False if it could not be.

    A failure is one warning on stderr and costs only speed: the caller has the table already.
    """

    def write(tmp: Path) -> None:
        table.to_parquet(tmp, index=False, write_page_checksum=True)
        os.chmod(tmp, 0o644)

    try:
        write_with(path, write)
        write_manifest(manifest_path(path), file_record(path, rows=len(table)))
    except Exception as e:  # read-only or full folder, or a table Parquet cannot hold: no cache, no error
        reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:120]
        say(f"warning: cannot cache the table at {path} ({reason}); reading without a cache (slower)")
        return False
    return True
