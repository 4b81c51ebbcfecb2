"""Any user/item/rating table (DataFrame, CSV/TSV, Parquet) in, a checked tidy table out.

Whatever a file holds, reading it ends in a table or one `DataError` line that names the file (and
line and column where they apply) and quotes at most a short excerpt of the bad content.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from collabkit.errors import DataError

TableSource = pd.DataFrame | str | Path

EXCERPT = 40  # characters of bad content an error message quotes at most
# A rating or timestamp cell: a plain decimal number (no hex, no True/False, no digit-group marks).
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT64_LIMIT = 2.0**63


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """`repr` of a value cut to `limit` characters, so a message never carries a whole bad file."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it: a FIFO or device would block."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as e:
        raise DataError(f"cannot read it ({e.strerror or e})", path=path) from None
    if stat.S_ISDIR(mode):
        raise DataError("is a folder, not a ratings file", path=path)
    if not stat.S_ISREG(mode):
        raise DataError("is not a regular file (a pipe, socket or device?); give a ratings file", path=path)
    if not os.access(path, os.R_OK):
        raise DataError("cannot read it (permission denied)", path=path)


def _first_line(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return f.readline(1 << 16)


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


def _one_line(text: object, limit: int = 160) -> str:
    """A library's error text on one line, cut short."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _not_utf8(path: Path, error: UnicodeDecodeError) -> DataError:
    """Where a file stops being UTF-8 (line and byte), found by decoding it again from the start:
    the parser reads in blocks, so its own offset is into a block, not the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    bad = chunk[e.start : e.start + 1].hex().upper()
                    line += chunk.count(b"\n", 0, e.start)
                    where = f"byte 0x{bad} at offset {offset + e.start:,}"
                    return DataError(
                        f"not UTF-8 text ({where}); save the file as UTF-8",
                        path=path,
                        line=line,
                    )
                offset += len(chunk)
                line += chunk.count(b"\n")
    except OSError:
        pass
    return DataError(f"not UTF-8 text ({error.reason}); save the file as UTF-8", path=path)


def read_table(
    source: TableSource, *, sep: str | None = None, header: bool = True
) -> tuple[pd.DataFrame, str | None, int]:
    """Read a table; returns (frame, path or None, line number of the first data row).

    Raises:
        DataError: not a regular readable file, empty, not text, not a table.
    """
    if isinstance(source, pd.DataFrame):
        return source, None, 1
    path = Path(source)
    check_regular_file(path)
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path), str(path), 1
        except Exception as e:  # pyarrow raises several types for a damaged file
            words = str(e).replace(f"Could not open Parquet input source '{path}': ", "")
            raise DataError(f"not a readable Parquet file ({_one_line(words)})", path=path) from e
    if path.stat().st_size == 0:
        raise DataError("the file is empty: no ratings", path=path)
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
    except pd.errors.EmptyDataError as e:
        raise DataError("no columns and no ratings (blank file)", path=path) from e
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            want, line, saw = (int(g) for g in found.groups())
            raise DataError(f"expected {want} fields, found {saw}", path=path, line=line) from e
        raise DataError(f"cannot parse as a {sep!r}-separated table ({_one_line(e)})", path=path) from e
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from e
    except (csv.Error, ValueError, OverflowError) as e:  # the python engine's own complaints (NUL bytes...)
        raise DataError(f"cannot parse as a {sep!r}-separated table ({_one_line(e)})", path=path) from e
    except OSError as e:
        raise DataError(f"cannot read it ({e.strerror or e})", path=path) from e
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    return frame, str(path), 2 if header else 1


def _locate(path: Path, sep: str, pos: int, header: bool) -> int:
    """The file line where data row `pos` starts, counted as pandas reads (blank lines skipped, quoted
    line breaks kept). A row before it whose width differs from the header's is the real problem
    (pandas pads short rows with empty cells), so that one is raised instead."""
    want: int | None = None
    row = -1 if header else 0
    with path.open("r", encoding="utf-8", errors="replace", newline="") as f:
        if len(sep) == 1:
            reader = csv.reader(f, delimiter=sep)
            start = 1
            for record in reader:
                if record and any(record):
                    want = len(record) if want is None else want
                    if len(record) != want:
                        raise DataError(f"expected {want} fields, found {len(record)}", path=path, line=start)
                    if row == pos:
                        return start
                    row += 1
                start = reader.line_num + 1
        else:
            for number, text in enumerate(f, start=1):
                cells = text.rstrip("\r\n")
                if cells:
                    width = len(cells.split(sep))
                    want = width if want is None else want
                    if width != want:
                        raise DataError(f"expected {want} fields, found {width}", path=path, line=number)
                    if row == pos:
                        return number
                    row += 1
    return pos + (2 if header else 1)


def _numeric(
    frame: pd.DataFrame,
    column: str,
    path: str | None,
    locate: Callable[[int], int | None],
    *,
    integer: bool = False,
) -> pd.Series:
    """The column as float64, or a DataError naming the first bad cell.

    Ratings must be finite decimal numbers that fit a float32 (no hex, no True/False, no NaN or inf);
    timestamps (`integer`) whole numbers that fit an int64.
    """
    col = frame[column]
    dtype = col.dtype
    if (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)) and not (
        pd.api.types.is_bool_dtype(dtype)
    ):
        num = col.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(num)
    else:
        text = col.astype(str).str.strip()
        decimal = text.str.fullmatch(DECIMAL.pattern).to_numpy(dtype=bool, na_value=False)
        num = pd.to_numeric(text.where(decimal, "nan"), errors="coerce").to_numpy(dtype="float64")
        bad = ~decimal | ~np.isfinite(num)
    with np.errstate(over="ignore", invalid="ignore"):
        if integer:
            bad |= (num != np.floor(num)) | (np.abs(num) >= _INT64_LIMIT)
        else:
            bad |= ~np.isfinite(num.astype("float32"))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a finite number"
        raise DataError(
            f"{excerpt(col.iloc[pos])} is not {kind}",
            path=path,
            line=locate(pos),
            column=column,
        )
    return pd.Series(num, index=col.index)


def _ids_as_ints(values: pd.Series) -> pd.Series:
    """Ids read from text become integers when every one is a plain integer ("42"; not "007", "4.0")."""
    text = pa.array(values.astype("string[pyarrow]"))
    if not pc.all(pc.match_substring_regex(text, r"^-?(?:0|[1-9][0-9]{0,17})$")).as_py():
        return values.astype(str).astype(object) if values.dtype != object else values
    return pd.Series(pc.cast(text, pa.int64()).to_numpy(), index=values.index)  # C++ cast: 10x pandas


def _all_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) or all(isinstance(v, str) for v in values)


def _usable_id(value: object) -> bool:
    """A list, dict or array cannot be an id (it has no stable hash); a number or text can."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _strip_ids(values: pd.Series) -> pd.Series:
    """Text ids without the spaces around them: " 2" and "2" are one id."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    if _all_text(values):
        return values.str.strip()
    return values


def _require_columns(frame: pd.DataFrame, names: list[str], path: str | None) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        shown: list[str] = []
        width = 0
        for c in frame.columns:  # as many names as fit in about 120 characters
            name = excerpt(c)[1:-1]
            if shown and width + len(name) > 120:
                shown.append(f"... ({len(frame.columns) - len(shown)} more)")
                break
            shown.append(name)
            width += len(name) + 2
        raise DataError(
            f"no column {excerpt(missing[0])}; the table has: {', '.join(shown)}",
            path=path,
            line=1 if path else None,
        )


def _arrow_ids(ids: pa.ChunkedArray) -> np.ndarray:
    """Ids as int64 when every one is a plain integer ("42"; not "007", "4.0"), else as text."""
    if pc.all(pc.match_substring_regex(ids, r"^-?(?:0|[1-9][0-9]{0,17})$")).as_py():
        return pc.cast(ids, pa.int64()).to_numpy()
    return ids.to_numpy(zero_copy_only=False)


def _read_fast(
    path: Path, wanted: list[str], sep: str | None, header: bool, integer_cols: list[str]
) -> pd.DataFrame | None:
    """The wanted columns via pyarrow's multi-threaded CSV reader, if the file is clean; else None.

    Clean means: the columns exist, ratings are finite decimal numbers, timestamps decimal integers,
    no empty ids. Anything else returns None, and the careful reader finds and reports the first bad
    cell. Column types are given to the parser itself: its float parser refuses "True" and "0x5"
    (its type inference, and pandas' wrapper of it, would read them as 1 and 5). Its integer parser
    takes hex, so timestamps are read as text and checked.
    """
    sep = sep or _guess_sep(path)
    if len(sep) != 1 or not header or path.suffix == ".parquet" or len(set(wanted)) != len(wanted):
        return None
    user, item, rating = wanted[:3]
    types = {
        user: pa.string(),
        item: pa.string(),
        rating: pa.float64(),
        **dict.fromkeys(integer_cols, pa.string()),
    }
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
        names = table.column_names  # decoded here: a name that is not UTF-8 raises
    except Exception:  # any parse problem: let the careful path say exactly where
        return None
    if table.num_rows == 0 or len(set(names)) != len(names) or any(c not in names for c in wanted):
        return None
    columns: dict[str, Any] = {}
    try:
        if table[rating].null_count:  # an empty cell, or nan
            return None
        ratings = table[rating].to_numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(ratings.astype("float32")).all():
                return None
        for c in (user, item):
            ids = pc.utf8_trim_whitespace(table[c])  # " 2" and "2" are one id
            if ids.null_count or pc.any(pc.equal(ids, "")).as_py():
                return None
            columns[c] = _arrow_ids(ids)
        columns[rating] = ratings
        for c in integer_cols:
            text = table[c]
            if text.null_count or pc.any(pc.match_substring(text, "x", ignore_case=True)).as_py():
                return None
            columns[c] = pc.cast(text, pa.int64()).to_numpy()
        rest = table.drop_columns(wanted).to_pandas()
    except (pa.ArrowException, OverflowError, ValueError):  # ValueError includes UnicodeDecodeError
        return None
    for c in rest.columns:
        columns.setdefault(c, rest[c].to_numpy())
    return pd.DataFrame(columns)  # built at once: column by column fragments a wide table


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

    Every rating must be a finite decimal number and every timestamp an integer; the first bad cell
    is reported with its file, line and column. Empty user or item ids are refused the same way, and
    spaces around ids read from a file are dropped (" 2" is user 2). A table with no rows is refused.

    Raises:
        DataError: anything wrong with the file or a cell, in one line.
    """
    wanted = [user, item, rating] + ([timestamp] if timestamp else [])
    if not isinstance(source, pd.DataFrame):
        check_regular_file(Path(source))  # before any reader opens it: a FIFO would hang
        fast = _read_fast(Path(source), wanted, sep, header, [timestamp] if timestamp else [])
        if fast is not None:
            tidy = {"user": fast[user].to_numpy(), "item": fast[item].to_numpy()}
            tidy["rating"] = fast[rating].to_numpy(dtype="float32")
            if timestamp:
                tidy["timestamp"] = fast[timestamp].to_numpy(dtype="int64")
            for c in fast.columns:
                if c not in wanted and c not in tidy:
                    tidy[c] = fast[c].to_numpy()
            return pd.DataFrame(tidy)
    frame, path, first = read_table(source, sep=sep, header=header)

    def locate(pos: int) -> int | None:
        """Line of data row `pos` (only worked out for an error, so it costs nothing otherwise)."""
        if path is None:
            return None
        if Path(path).suffix == ".parquet":
            return first + pos
        try:
            return _locate(Path(path), sep or _guess_sep(Path(path)), pos, header)
        except (OSError, csv.Error):
            return first + pos

    _require_columns(frame, wanted, path)
    if len(frame) == 0:
        raise DataError("the table has no rows: no ratings", path=path)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name, col in (("user", user), ("item", item)):
        values = frame[col]
        if path is not None:
            values = _strip_ids(values)
        if values.dtype == object and not _all_text(values):
            unusable = np.array([not _usable_id(v) for v in values], dtype=bool)
            if unusable.any():
                pos = int(np.flatnonzero(unusable)[0])
                raise DataError(
                    f"{name} id {excerpt(values.iloc[pos])} is a {type(values.iloc[pos]).__name__}; "
                    "ids must be numbers or text",
                    path=path,
                    line=locate(pos),
                    column=col,
                )
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise DataError(f"empty {name} id", path=path, line=locate(pos), column=col)
        if path is not None and not pd.api.types.is_numeric_dtype(values):
            values = _ids_as_ints(values)
        out[name] = values.to_numpy()
    out["rating"] = _numeric(frame, rating, path, locate).astype("float32").to_numpy()
    if timestamp:
        out["timestamp"] = _numeric(frame, timestamp, path, locate, integer=True).astype("int64").to_numpy()
    rest = {c: frame[c].to_numpy() for c in frame.columns if c not in wanted and c not in out.columns}
    return pd.concat([out, pd.DataFrame(rest, index=out.index)], axis=1) if rest else out
