"""The one file hash, the one JSON cleaner and the one table display that data, persistence, the
command and the service share."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.checksum import file_sha256
from collabkit.display import shown
from collabkit.jsonable import dumps, jsonable


def test_file_sha256_streams_any_size_and_algorithm(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 9000  # over two 1 MiB chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path), algo="md5") == hashlib.md5(data).hexdigest()  # noqa: S324
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
    with pytest.raises(ValueError):
        file_sha256(path, algo="nope")


@dataclass
class Point:
    x: float
    tag: str


def test_jsonable_makes_strict_json() -> None:
    value = {
        "nan": float("nan"),
        "inf": [float("inf"), -math.inf, 1.5],
        "np": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "np_nan": np.array([np.nan, 2.0]),
        "scalars": (np.float32(0.5), np.int64(7), np.bool_(True), np.float64("nan")),
        "torch": torch.tensor([1.0, float("nan")]),
        "torch_scalar": torch.tensor(3),
        "path": Path("/tmp/x"),
        "set": {3},
        3: "int key",
        "point": Point(float("inf"), "a"),
        "none": None,
    }
    got = jsonable(value)
    assert got == {
        "nan": None,
        "inf": [None, None, 1.5],
        "np": [[1, 2], [3, 4]],
        "np_nan": [None, 2.0],
        "scalars": [0.5, 7, True, None],
        "torch": [1.0, None],
        "torch_scalar": 3,
        "path": "/tmp/x",
        "set": [3],
        "3": "int key",
        "point": {"x": None, "tag": "a"},
        "none": None,
    }
    assert type(got["scalars"][1]) is int and type(got["scalars"][2]) is bool
    assert json.loads(dumps(value)) == got
    assert "NaN" not in dumps(value) and "Infinity" not in dumps(value)


def test_dumps_reads_back_with_a_strict_parser() -> None:
    """A strict reader (one that rejects NaN and Infinity, as JavaScript's JSON.parse does) reads it."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    text = dumps({"rmse": np.float32("nan"), "rows": [np.inf, 2], "ok": 1.0}, indent=None)
    assert json.loads(text, parse_constant=refuse) == {"rmse": None, "rows": [None, 2], "ok": 1.0}
    with pytest.raises(ValueError):
        json.loads(json.dumps({"rmse": float("nan")}), parse_constant=refuse)  # what it guards against


def test_shown_prints_once_or_returns(capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame({"user": [1, 2], "title": ["A", "B"]})
    assert shown(frame, show=False) is frame
    assert capsys.readouterr().out == ""
    assert shown(frame, show=True) is None
    assert capsys.readouterr().out.splitlines() == frame.to_string(index=False).splitlines()
