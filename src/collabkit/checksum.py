"""File checksums: the one streaming file hash that datasets, caches and model folders share."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20  # 1 MiB: a multi-GB ratings file is hashed in constant memory


def file_sha256(path: str | os.PathLike[str], algo: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks.

    Args:
        path: the file.
        algo: any `hashlib` name; "sha256" unless a publisher gives another (GroupLens: md5).

    Raises:
        ValueError: `algo` is not a hash `hashlib` knows.
        OSError: the file cannot be read.
    """
    digest = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["file_sha256"]
