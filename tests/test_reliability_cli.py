"""Every failure a user can cause ends in one line on stderr and a non-zero exit; bugs say they are bugs."""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.cli.app import clean_errors, emit
from collabkit.errors import CollabkitError, DataError

runner = CliRunner()


def _one_line(result: object) -> str:
    """The single stderr line of a failed run (and nothing on stdout, no traceback anywhere)."""
    err = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(err) == 1, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output and result.stdout == ""  # type: ignore[attr-defined]
    return err[0]


# --- the handler on its own: each class of failure, worded, with its exit status ---------------


def _safetensors_error() -> Exception:
    from safetensors import SafetensorError

    return SafetensorError("Error while deserializing header: HeaderTooLarge")


def _unicode_error() -> Exception:
    try:
        b"\xff\xfe".decode("utf-8")
    except UnicodeDecodeError as e:
        return e
    raise AssertionError("unreachable")


def _os(code: int, path: str, path2: str | None = None) -> Callable[[], OSError]:
    return lambda: OSError(code, os.strerror(code), path, None, path2)


BUG = "collabkit: internal error: ZeroDivisionError: division by zero; this is a bug in collabkit"
FAILURES: list[tuple[str, Callable[[], BaseException], int, str]] = [
    ("bad input", lambda: CollabkitError("no column 'x'"), 2, "collabkit: error: no column 'x'"),
    ("data", lambda: DataError("bad", path="r.csv", line=3), 2, "collabkit: error: r.csv, line 3: bad"),
    ("denied", _os(errno.EACCES, "/m/x"), 2, "/m/x: permission denied"),
    ("read-only", _os(errno.EROFS, "/ro/m"), 2, "/ro/m: the file system is read-only"),
    ("disk full", _os(errno.ENOSPC, "/d/m"), 2, "/d/m: no space left on the device"),
    ("is a dir", _os(errno.EISDIR, "/d"), 2, "/d: is a folder where a file was expected"),
    ("not a dir", _os(errno.ENOTDIR, "/f/x"), 2, "/f/x: a part of this path is a file"),
    ("exists", _os(errno.EEXIST, "/e"), 2, "/e: already exists"),
    ("temporary name", _os(errno.EROFS, "/ro/.m.k2x9_q.tmp"), 2, "/ro/m: the file system is read-only"),
    (
        "broken pipe",
        lambda: BrokenPipeError(errno.EPIPE, "Broken pipe"),
        2,
        "output was closed before collabkit",
    ),
    ("missing", _os(errno.ENOENT, "/n"), 2, "/n: no such file or folder"),
    ("rename", _os(errno.EXDEV, "/a", "/b"), 2, "/a -> /b: invalid cross-device link"),
    ("json", lambda: json.JSONDecodeError("Expecting value", "{", 1), 2, "not valid JSON (Expecting value"),
    ("unicode", _unicode_error, 2, "not text in the expected encoding"),
    ("safetensors", _safetensors_error, 2, "a weights file is damaged or not safetensors"),
    ("memory", MemoryError, 2, "out of memory"),
    ("ctrl-c", KeyboardInterrupt, 130, "collabkit: interrupted"),
    (
        "bug",
        lambda: ZeroDivisionError("division by zero"),
        70,
        f"{BUG}, not in your input: run the command again with COLLABKIT_DEBUG=1",
    ),
]


def _probe(exc: Callable[[], BaseException]) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    def run() -> None:
        with clean_errors():
            raise exc()

    return probe


@pytest.mark.parametrize(("name", "exc", "code", "words"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failure_is_one_line_and_an_exit_status(
    name: str, exc: Callable[[], BaseException], code: int, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLLABKIT_DEBUG", raising=False)
    result = runner.invoke(_probe(exc), [])
    assert result.exit_code == code, (result.output, result.exception)
    assert words in _one_line(result)


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLABKIT_DEBUG", "1")
    result = runner.invoke(_probe(lambda: ZeroDivisionError("division by zero")), [])
    assert result.exit_code == 70
    assert "Traceback" in result.stderr and result.stderr.strip().endswith("keep it with the command you ran")


def test_emit_writes_valid_json_with_null_for_non_finite(capsys: pytest.CaptureFixture[str]) -> None:
    emit(
        {
            "nan": float("nan"),
            "inf": np.float32(np.inf),
            "tensor": torch.tensor([1.0, float("-inf")]),
            "array": np.array([[np.nan, 2.0]]),
            "int": np.int64(3),
            "bool": np.bool_(True),
            "path": Path("runs/m"),
            "nested": [{"x": (float("nan"), 1.5)}],
            np.int64(7): "numpy key",
        },
        True,
    )

    def no_constants(name: str) -> None:
        raise AssertionError(f"JSON has {name}")

    doc = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert doc == {
        "nan": None, "inf": None, "tensor": [1.0, None], "array": [[None, 2.0]], "int": 3, "bool": True,
        "path": "runs/m", "nested": [{"x": [None, 1.5]}], "7": "numpy key",
    }  # fmt: skip
    emit({"x": math.nan}, False)
    assert capsys.readouterr().out == ""


# --- the real command on bad data files ------------------------------------------------------


@pytest.fixture
def ratings_csv(tmp_path: Path, ratings: pd.DataFrame) -> Path:
    path = tmp_path / "ratings.csv"
    ratings.to_csv(path, index=False)
    return path


def _train(data: Path | str, out: Path, *extra: str) -> object:
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--bs", "256", "--quiet"]
    return runner.invoke(app, [*args, *extra])


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "empty": lambda p: p.write_bytes(b""),
    "header only": lambda p: p.write_text("user,item,rating\n"),
    "binary": lambda p: p.write_bytes(bytes(range(256)) * 20),
    "hex rating": lambda p: p.write_text("user,item,rating\n1,2,0x5\n"),
    "bool rating": lambda p: p.write_text("user,item,rating\n1,2,True\n"),
    "nan rating": lambda p: p.write_text("user,item,rating\n1,2,4\n2,2,nan\n"),
    "folder": lambda p: p.mkdir(),
    "fifo": lambda p: os.mkfifo(p),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_data_file_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "ratings.csv"
    BAD_FILES[kind](data)
    result = _train(data, tmp_path / "m")
    assert result.exit_code == 2, (result.output, result.exception)  # type: ignore[attr-defined]
    line = _one_line(result)
    assert line.startswith(f"collabkit: error: {data}") and len(line) < len(str(data)) + 160
    assert not (tmp_path / "m").exists()


def _refuse_mkdir(monkeypatch: pytest.MonkeyPatch, under: Path, code: int) -> None:
    """Make every new folder under `under` fail with `code`, as a read-only or full disk would."""
    real = os.mkdir

    def mkdir(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if Path(path).resolve().is_relative_to(under.resolve()):
            raise OSError(code, os.strerror(code), str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)


def test_read_only_out_folder_is_one_line(
    tmp_path: Path, ratings_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes through chmod: refuse the way a read-only mount would
        _refuse_mkdir(monkeypatch, locked, errno.EROFS)
    else:
        locked.chmod(0o555)
    try:
        result = _train(ratings_csv, locked / "m")
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2, (result.output, result.exception)  # type: ignore[attr-defined]
    line = _one_line(result)
    assert f"{locked / 'm'}: " in line and ("read-only" in line or "permission denied" in line)
    assert list(locked.iterdir()) == []


def test_full_disk_is_one_line(tmp_path: Path, ratings_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_mkdir(monkeypatch, tmp_path / "full", errno.ENOSPC)
    result = _train(ratings_csv, tmp_path / "full" / "m")
    assert result.exit_code == 2
    assert "no space left on the device" in _one_line(result)


def test_ctrl_c_and_bugs_during_training(
    tmp_path: Path, ratings_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collabkit.workflows as workflows

    monkeypatch.delenv("COLLABKIT_DEBUG", raising=False)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(workflows, "train", interrupted)
    result = _train(ratings_csv, tmp_path / "m")
    assert result.exit_code == 130 and _one_line(result) == "collabkit: interrupted"  # type: ignore[attr-defined]

    def bug(*args: object, **kwargs: object) -> None:
        raise IndexError("index 5 is out of bounds")

    monkeypatch.setattr(workflows, "train", bug)
    result = _train(ratings_csv, tmp_path / "m")
    assert result.exit_code == 70  # type: ignore[attr-defined]
    assert _one_line(result).startswith("collabkit: internal error: IndexError: index 5 is out of bounds;")


def test_damaged_model_folder_is_one_line(tmp_path: Path, ratings_csv: Path) -> None:
    model = tmp_path / "m"
    assert _train(ratings_csv, model).exit_code == 0  # type: ignore[attr-defined]
    (model / "config.json").write_text("{ not json")
    result = runner.invoke(app, ["predict", str(model), "--user", "1", "--item", "100"])
    assert result.exit_code == 2, (result.output, result.exception)
    _one_line(result)
    (model / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["predict", str(model), "--user", "1", "--item", "100"])
    assert result.exit_code == 2, (result.output, result.exception)
    _one_line(result)


def test_out_under_a_file_says_so(tmp_path: Path, ratings_csv: Path) -> None:
    result = _train(ratings_csv, ratings_csv / "m")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert _one_line(result) == f"collabkit: error: {ratings_csv}: is a file where a folder was expected"
    assert ratings_csv.is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["crossval", "--k", "0"], "--k must be at least 2 folds"),
        (["crossval", "--folds", "u1,u1,u1"], "u1 more than once"),
        (["train", "--split", "time", "--cutoff", "nan", "--out", "OUT"], "--cutoff must be a finite number"),
        (["train", "--valid-pct", "nan", "--out", "OUT"], "--valid-pct must be a finite number"),
    ],
)
def test_options_are_range_checked_where_they_are_parsed(
    ratings_csv: Path, tmp_path: Path, args: list[str], words: str
) -> None:
    args = [str(tmp_path / "m") if a == "OUT" else a for a in args]
    res = runner.invoke(app, [*args, "--data", str(ratings_csv)])
    assert res.exit_code == 2 and words in res.output, res.output
    assert "internal error" not in res.output


def test_huge_numbers_and_options_that_do_not_apply_are_one_line(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    train = ["train", "--data", str(ratings_csv), "--out", str(out), "-q", "--recipe", "chapter"]  # factors
    assert runner.invoke(app, train).exit_code == 0
    res = runner.invoke(app, ["similar", str(out), "100", "--min-count", str(10**21)])
    assert res.exit_code == 2 and "min_count must be a whole number from 1 to 2**62" in res.output
    res = runner.invoke(app, ["similar", str(out), "100", "--min-count", str(10**9)])
    assert res.exit_code == 0 and "0 items most like" in res.output  # no item has that many ratings
    res = runner.invoke(app, ["recommend", str(out), "--rate", "100=5", "--popularity-penalty", "0.5"])
    assert res.exit_code == 2 and "--popularity-penalty applies to a known --user only" in res.output
    res = runner.invoke(
        app, ["evaluate", str(out), "--data", str(ratings_csv), "--ranking", "--relevant", "nan"]
    )
    assert res.exit_code == 2 and "relevant_threshold must be a finite number" in res.output


def test_duplicates_rule_is_one_option_and_its_effect_is_said(tmp_path: Path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("user,item,rating\n1,2,5\n1,2,3\n2,2,4\n2,3,1\n3,3,2\n3,2,5\n4,3,4\n4,2,2\n")
    res = runner.invoke(app, ["train", "--data", str(csv), "--out", str(tmp_path / "a"), "-q"])
    assert res.exit_code == 2 and "lines 2 and 3" in res.output and "--duplicates" in res.output
    res = runner.invoke(app, ["train", "--data", str(csv), "--out", str(tmp_path / "b"), "-q",
                              "--duplicates", "mean", "--valid-pct", "0.25"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 row repeating a (user, item) pair dropped (--duplicates mean" in res.stderr
    res = runner.invoke(
        app, ["train", "--data", str(csv), "--out", str(tmp_path / "c"), "--duplicates", "keep"]
    )
    assert res.exit_code == 2 and "expected one of: error, last, mean" in res.output
