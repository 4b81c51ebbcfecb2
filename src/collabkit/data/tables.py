"""Any user/item/rating table (DataFrame, CSV/TSV, Parquet) in, a checked tidy table out."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from collabkit.errors import DataError

TableSource = pd.DataFrame | str | Path


def _first_line(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return f.readline()


def _guess_sep(path: Path) -> str:
    """Tab for .tsv/.data, else whichever of tab, comma, pipe or `::` the header line uses."""
    if path.suffix in {".tsv", ".data"}:
        return "\t"
    line = _first_line(path)
    for sep in ("\t", "::", "|", ","):
        if sep in line:
            return sep
    return ","


def _first_ragged_line(path: Path, sep: str) -> tuple[int | None, int, int]:
    """(line number, fields expected, fields found) of the first row whose width differs from line 1."""
    with path.open("r", encoding="utf-8", errors="replace") as f:
        want = len(f.readline().rstrip("\r\n").split(sep))
        for number, text in enumerate(f, start=2):
            saw = len(text.rstrip("\r\n").split(sep))
            if saw != want:
                return number, want, saw
    return None, want, want


def read_table(
    source: TableSource, *, sep: str | None = None, header: bool = True
) -> tuple[pd.DataFrame, str | None, int]:
    """Read a table; returns (frame, path or None, line number of the first data row)."""
    if isinstance(source, pd.DataFrame):
        return source, None, 1
    path = Path(source)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path), str(path), 1
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(f"not a readable Parquet file ({e})", path=path) from e
    sep = sep or _guess_sep(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas drops extra fields otherwise
            frame = pd.read_csv(
                path,
                sep=sep,
                header=0 if header else None,
                engine="python" if len(sep) > 1 else "c",
                dtype=str,
                keep_default_na=False,
                index_col=False,
            )
    except pd.errors.ParserWarning as e:
        line, want, saw = _first_ragged_line(path, sep)
        raise DataError(f"expected {want} fields, found {saw}", path=path, line=line) from e
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            want, line, saw = (int(g) for g in found.groups())
            raise DataError(f"expected {want} fields, found {saw}", path=path, line=line) from e
        raise DataError(f"cannot parse as a {sep!r}-separated table: {e}", path=path) from e
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from e
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    return frame, str(path), 2 if header else 1


def _numeric(
    frame: pd.DataFrame, column: str, path: str | None, first_line: int, *, integer: bool = False
) -> pd.Series:
    """The column as numbers, or a DataError naming the first bad cell."""
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.astype("float64")
        bad = ~np.isfinite(num.to_numpy())
    else:
        text = col.astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna().to_numpy() | ~np.isfinite(num.to_numpy(dtype="float64", na_value=np.nan))
    if integer and not bad.any():
        bad = num.to_numpy() != np.floor(num.to_numpy())
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a finite number"
        raise DataError(
            f"{col.iloc[pos]!r} is not {kind}",
            path=path,
            line=first_line + pos if path else None,
            column=column,
        )
    return num


def _ids_as_ints(values: pd.Series) -> pd.Series:
    """Ids read from text become integers when every one is a plain integer ("42"; not "007", "4.0")."""
    text = pa.array(values.astype("string[pyarrow]"))
    if not pc.all(pc.match_substring_regex(text, r"^-?(?:0|[1-9][0-9]{0,17})$")).as_py():
        return values.astype(str).astype(object) if values.dtype != object else values
    return pd.Series(pc.cast(text, pa.int64()).to_numpy(), index=values.index)  # C++ cast: 10x pandas


def _require_columns(frame: pd.DataFrame, names: list[str], path: str | None) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataError(
            f"no column {missing[0]!r}; the table has: {', '.join(map(str, frame.columns))}",
            path=path,
            line=1 if path else None,
        )


def _read_fast(
    path: Path, wanted: list[str], sep: str | None, header: bool, integer_cols: list[str]
) -> pd.DataFrame | None:
    """The wanted columns via pyarrow's multi-threaded CSV reader, if the file is clean; else None.

    Clean means: the columns exist, ratings are finite numbers, timestamps integers, no empty ids.
    Anything else returns None, and the careful reader finds and reports the first bad cell.
    """
    sep = sep or _guess_sep(path)
    if len(sep) != 1 or not header or path.suffix == ".parquet":
        return None
    try:
        ids = {c: "string[pyarrow]" for c in wanted[:2]}  # "007" must stay "007"
        frame = pd.read_csv(path, sep=sep, engine="pyarrow", dtype=ids)
    except Exception:  # any parse problem: let the careful path say exactly where
        return None
    if any(c not in frame.columns for c in wanted):
        return None
    rating = frame[wanted[2]]
    if not pd.api.types.is_numeric_dtype(rating) or not np.isfinite(rating.to_numpy(dtype="float64")).all():
        return None
    for c in integer_cols:
        if not pd.api.types.is_integer_dtype(frame[c]):
            return None
    for c in wanted[:2]:
        if frame[c].isna().any() or (frame[c].str.strip() == "").any():
            return None
        frame[c] = _ids_as_ints(frame[c])
    return frame


def read_ratings(
    source: TableSource,
    *,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    timestamp: str | None = None,
    sep: str | None = None,
    header: bool = True,
) -> pd.DataFrame:
    """A tidy ratings table with columns user, item, rating (float32) [, timestamp] + the rest.

    Every rating must be a finite number and every timestamp an integer; the first bad cell is
    reported with its file, line and column. Empty user or item ids are refused the same way.
    """
    wanted = [user, item, rating] + ([timestamp] if timestamp else [])
    if not isinstance(source, pd.DataFrame) and Path(source).exists():
        fast = _read_fast(Path(source), wanted, sep, header, [timestamp] if timestamp else [])
        if fast is not None:
            out = pd.DataFrame({"user": fast[user].to_numpy(), "item": fast[item].to_numpy()})
            out["rating"] = fast[rating].to_numpy(dtype="float32")
            if timestamp:
                out["timestamp"] = fast[timestamp].to_numpy(dtype="int64")
            for c in fast.columns:
                if c not in wanted and c not in out.columns:
                    out[c] = fast[c].to_numpy()
            return out
    frame, path, first = read_table(source, sep=sep, header=header)
    _require_columns(frame, wanted, path)
    if len(frame) == 0:
        raise DataError("the table has no rows", path=path)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name, col in (("user", user), ("item", item)):
        values = frame[col]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise DataError(f"empty {name} id", path=path, line=first + pos if path else None, column=col)
        if path is not None and not pd.api.types.is_numeric_dtype(values):
            values = _ids_as_ints(values)
        out[name] = values.to_numpy()
    out["rating"] = _numeric(frame, rating, path, first).astype("float32").to_numpy()
    if timestamp:
        out["timestamp"] = _numeric(frame, timestamp, path, first, integer=True).astype("int64")
    rest = [c for c in frame.columns if c not in wanted and c not in out.columns]
    for c in rest:
        out[c] = frame[c].to_numpy()
    return out
