"""Any user/item/rating table (DataFrame, CSV/TSV, Parquet) in, a checked tidy table out.

Whatever a file holds, reading it ends in a table or one `DataError` line that names the file (and
line and column where they apply) and quotes at most a short excerpt of the bad content.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import io
import lzma
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, cast

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


# A compressed file is read through its decompressor; the name's last suffix says which.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".lzma": "xz", ".zst": "zstd", ".zip": "zip"}
_ARCHIVES = (".tar", ".tgz", ".tbz2", ".txz", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")


def compression_of(path: Path) -> str | None:
    """The compression a file's name declares (gzip, bzip2, xz, zstd, zip), or None for plain text.

    Raises:
        DataError: a tar archive (a folder of files, not one table).
    """
    name = path.name.lower()
    if name.endswith(_ARCHIVES):
        raise DataError(
            "is a tar archive (several files), not a ratings table; extract it and give the ratings file",
            path=path,
        )
    return COMPRESSIONS.get(path.suffix.lower())


def _inner_suffix(path: Path) -> str:
    """The suffix of the table inside: `r.tsv.gz` -> `.tsv`."""
    return Path(path.stem).suffix.lower() if path.suffix.lower() in COMPRESSIONS else path.suffix.lower()


@contextlib.contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed where its name says it is compressed (a zip must hold one file).

    Decompression errors surface when reading; `_unpack_error` turns them into one DataError line.
    """
    kind = compression_of(path)
    if kind is None:
        with path.open("rb") as f:
            yield f
    elif kind == "gzip":
        with gzip.open(path, "rb") as f:
            yield cast(BinaryIO, f)
    elif kind == "bzip2":
        with bz2.open(path, "rb") as f:
            yield cast(BinaryIO, f)
    elif kind == "xz":
        with lzma.open(path, "rb") as f:
            yield cast(BinaryIO, f)
    elif kind == "zstd":
        if not pa.Codec.is_available("zstd"):
            raise DataError(
                "a zstd file, and this pyarrow cannot decompress zstd; decompress it first", path=path
            )
        with pa.input_stream(str(path), compression="zstd") as f:
            yield cast(BinaryIO, f)
    else:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = ", ".join(excerpt(m.filename) for m in members[:3])
                raise DataError(
                    f"a zip of {len(members)} files ({names or 'none'}); give a zip of one ratings file, "
                    "or the file itself",
                    path=path,
                )
            with zf.open(members[0]) as f:
                yield cast(BinaryIO, f)


_UNPACK_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, zipfile.BadZipFile, pa.ArrowException)


def _unpack_error(path: Path, e: BaseException) -> DataError | None:
    """A DataError naming the compression when a compressed file cannot be decompressed, else None."""
    kind = compression_of(path)
    if kind is None or not isinstance(e, _UNPACK_ERRORS):
        return None
    return DataError(f"not a readable {kind} file ({_one_line(e) or type(e).__name__})", path=path)


def _first_line(path: Path) -> str:
    try:
        with open_binary(path) as f:
            head = f.read(1 << 16)  # not readline: a decompressing stream may lack it
        return head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    except DataError:
        raise
    except Exception as e:
        problem = _unpack_error(path, e)
        if problem is None:
            raise
        raise problem from e


def _guess_sep(path: Path) -> str:
    """Tab for .tsv/.data, else whichever of tab, comma, pipe or `::` the header line uses."""
    if _inner_suffix(path) in {".tsv", ".data"}:
        return "\t"
    line = _first_line(path)
    for sep in ("\t", "::", "|", ","):
        if sep in line:
            return sep
    return ","


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
        with open_binary(path) as f:
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
    except Exception:  # noqa: BLE001  (the first error is the one reported)
        pass
    return DataError(f"not UTF-8 text ({error.reason}); save the file as UTF-8", path=path)


def _records(text: TextIO, sep: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of every non-blank record. One-character separators follow CSV
    quoting (a quoted field may hold the separator or a line break); `::` splits plainly."""
    if len(sep) == 1:
        reader = csv.reader(text, delimiter=sep, strict=False)
        done = 0
        for record in reader:
            start, done = done + 1, reader.line_num
            if record:
                yield start, record
    else:
        for number, line in enumerate(text, start=1):
            line = line.rstrip("\r\n")
            if line:
                yield number, line.split(sep)


def _names(header: list[str], path: Path) -> list[str]:
    """Header names as written; a repeated name gets `.1`, `.2` as pandas does."""
    names: list[str] = []
    for raw in header:
        name, n = raw, 0
        while (name if n == 0 else f"{name}.{n}") in names:
            n += 1
        names.append(name if n == 0 else f"{name}.{n}")
    return names


def _read_text(path: Path, sep: str, header: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Every cell as text, and the line each data row starts on.

    Every record must have as many fields as the header (or the first row): a short or long row is
    refused with its line, never padded or cut, so no value can land in another column.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    names: list[str] | None = None
    want = 0
    with open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="" if len(sep) == 1 else None)
        for number, fields in _records(text, sep):
            if names is None:
                want = len(fields)
                names = _names(fields, path) if header else [str(i) for i in range(want)]
                if header:
                    continue
            if len(fields) != want:
                raise DataError(f"expected {want} fields, found {len(fields)}", path=path, line=number)
            rows.append(fields)
            lines.append(number)
    if names is None:
        raise DataError("no columns and no ratings (blank file)", path=path)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({n: np.array(c, dtype=object) for n, c in zip(names, columns, strict=True)})
    return frame, np.array(lines, dtype=np.int64)


def read_table(
    source: TableSource, *, sep: str | None = None, header: bool = True
) -> tuple[pd.DataFrame, str | None, np.ndarray | None]:
    """Read a table; returns (frame, path or None, file line of each data row or None).

    Text files give every cell as text. Parquet rows are numbered from 1 as their "lines".

    Raises:
        DataError: not a regular readable file, empty, not text, not a table, a row whose field
            count differs from the header's, a compressed file that cannot be decompressed.
    """
    if isinstance(source, pd.DataFrame):
        return source, None, None
    path = Path(source)
    check_regular_file(path)
    if path.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            words = str(e).replace(f"Could not open Parquet input source '{path}': ", "")
            raise DataError(f"not a readable Parquet file ({_one_line(words)})", path=path) from e
        return frame, str(path), np.arange(1, len(frame) + 1, dtype=np.int64)
    if path.stat().st_size == 0:
        raise DataError("the file is empty: no ratings", path=path)
    sep = sep or _guess_sep(path)
    try:
        frame, lines = _read_text(path, sep, header)
    except DataError:
        raise
    except UnicodeDecodeError as e:
        if compression_of(path) is None:
            raise _not_utf8(path, e) from e
        raise DataError(f"not UTF-8 text ({e.reason}); save the file as UTF-8", path=path) from e
    except csv.Error as e:  # a field beyond the csv module's limit, ...
        raise DataError(f"cannot parse as a {sep!r}-separated table ({_one_line(e)})", path=path) from e
    except Exception as e:
        problem = _unpack_error(path, e)
        if problem is not None:
            raise problem from e
        if isinstance(e, OSError):
            raise DataError(f"cannot read it ({e.strerror or e})", path=path) from e
        raise
    return frame, str(path), lines


def _numeric(
    frame: pd.DataFrame,
    column: str,
    path: str | None,
    locate: Callable[[int], int | None],
) -> pd.Series:
    """The ratings column as float64, or a DataError naming the first bad cell.

    Ratings must be finite decimal numbers that fit a float32 (no hex, no True/False, no NaN or inf).
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
        bad |= ~np.isfinite(num.astype("float32"))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{excerpt(col.iloc[pos])} is not a finite number{_row(path, pos)}",
            path=path,
            line=locate(pos),
            column=column,
        )
    return pd.Series(num, index=col.index)


def _row(path: str | None, pos: int) -> str:
    """The words " (row N)" for a DataFrame, which has no lines to name; nothing for a file."""
    return f" (row {pos})" if path is None else ""


class BadTimestamp(ValueError):
    """A cell that is not a timestamp: its position and what is wrong with it."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos, self.message = pos, message


ISO_EXAMPLE = "such as 2023-01-02 or 2023-01-02T10:30:00"


def parse_timestamps(values: pd.Series, *, whole: bool = True) -> np.ndarray:
    """A timestamp column as numbers whose order is the time order (int64, or float64 for fractional
    numbers when `whole` is False); dates and times (datetime values, or ISO text such as
    2023-01-02) become Unix seconds (UTC; a time without a zone is taken as UTC).

    Numbers and dates are never mixed: the first cell decides which the column holds. Text is never
    ordered as text.

    Raises:
        BadTimestamp: the first cell that is not a timestamp of the column's kind.
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise BadTimestamp(0, f"{excerpt(values.iloc[0])} is not a timestamp (a number or a date)")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _seconds(pd.to_datetime(values, utc=True), values)
    if pd.api.types.is_numeric_dtype(dtype):
        num = values.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        return _whole_or_float(num, np.zeros(len(num), dtype=bool), values, whole)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if not _all_text(values):
        try:
            dates = pd.to_datetime(values, utc=True, errors="coerce")
        except (TypeError, ValueError):
            raise BadTimestamp(
                0, f"{excerpt(values.iloc[0])} is not a timestamp (a number or a date)"
            ) from None
        return _seconds(dates, values)
    text = values.astype(str).str.strip()
    decimal = text.str.fullmatch(DECIMAL.pattern).to_numpy(dtype=bool, na_value=False)
    if decimal[0]:
        num = pd.to_numeric(text.where(decimal, "nan"), errors="coerce").to_numpy(dtype="float64")
        return _whole_or_float(num, ~decimal, values, whole)
    dates = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    return _seconds(dates, values)


def day_numbers(values: pd.Series) -> np.ndarray:
    """A timestamp column as whole days since 1970-01-01 UTC (int64): Unix seconds, or dates, as
    `parse_timestamps` reads them. The day a rating was given, for models with day effects."""
    return np.floor(parse_timestamps(values, whole=False) / 86_400).astype(np.int64)


def _whole_or_float(num: np.ndarray, bad: np.ndarray, values: pd.Series, whole: bool) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        bad = bad | ~np.isfinite(num)
        if whole:
            bad |= (num != np.floor(num)) | (np.abs(num) >= _INT64_LIMIT)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        kind = "an integer" if whole else "a finite number"
        raise BadTimestamp(pos, f"{excerpt(values.iloc[pos])} is not {kind}")
    return num.astype(np.int64) if whole else num


def _seconds(dates: pd.Series, values: pd.Series) -> np.ndarray:
    bad = dates.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise BadTimestamp(pos, f"{excerpt(values.iloc[pos])} is not an ISO date or time ({ISO_EXAMPLE})")
    seconds = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.int64)


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

    Clean means: every row has the header's field count (pyarrow refuses any other row), the
    columns exist, ratings are finite decimal numbers, timestamps decimal integers or ISO dates, no
    empty ids. Anything else returns None, and the careful reader finds and reports the first bad
    cell. Column types are given to the parser itself: its float parser refuses "True" and "0x5"
    (its type inference, and pandas' wrapper of it, would read them as 1 and 5). Its integer parser
    takes hex, so timestamps are read as text and checked.
    """
    sep = sep or _guess_sep(path)
    if len(sep) != 1 or not header or path.suffix.lower() == ".parquet" or len(set(wanted)) != len(wanted):
        return None
    user, item, rating = wanted[:3]
    types = {
        user: pa.string(),
        item: pa.string(),
        rating: pa.float64(),
        **dict.fromkeys(integer_cols, pa.string()),
    }
    try:
        with open_binary(path) as raw:  # decompressed by us: pyarrow knows only some suffixes
            table = pacsv.read_csv(
                raw,
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
            try:
                columns[c] = pc.cast(text, pa.int64()).to_numpy()
            except pa.ArrowInvalid:  # dates, or a bad cell: checked the careful way
                columns[c] = parse_timestamps(pd.Series(text.to_numpy(zero_copy_only=False), dtype=object))
        rest = table.drop_columns(wanted).to_pandas()
    except (pa.ArrowException, OverflowError, ValueError):  # ValueError: UnicodeDecodeError, BadTimestamp
        return None
    for c in rest.columns:
        columns.setdefault(c, rest[c].to_numpy())
    return pd.DataFrame(columns)  # built at once: column by column fragments a wide table


Duplicates = Literal["error", "last", "mean", "keep"]
DUPLICATE_RULES: tuple[str, ...] = ("error", "last", "mean", "keep")


def _pair_keys(table: pd.DataFrame) -> np.ndarray:
    """One int64 per row, equal for equal (user, item) pairs."""
    users = pd.factorize(table["user"])[0].astype(np.int64)
    items = pd.factorize(table["item"])[0].astype(np.int64)
    return users * (int(items.max(initial=0)) + 1) + items


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def apply_duplicates(
    table: pd.DataFrame,
    duplicates: Duplicates = "error",
    *,
    path: str | None = None,
    lines: np.ndarray | None = None,
) -> pd.DataFrame:
    """The table with one rating per (user, item) pair, by the rule `duplicates`:

    - "error": a table with a repeated pair is refused, naming how many rows repeat a pair and the
      first two lines (rows, for a DataFrame) that clash;
    - "last": the latest rating is kept (by timestamp where there is a `timestamp` column, then by
      row order);
    - "mean": the pair's ratings are averaged (on the row "last" would keep);
    - "keep": every row stays, each a rating of its own (fastai's behaviour, and the chapter's
      when twin titles merge two films into one item); `attrs["duplicates_kept"]` counts them.

    Kept rows stay in file order. `table.attrs["duplicates_dropped"]` says how many rows went (0 for
    a table without duplicates), so a command can print it.

    Raises:
        DataError: duplicates under "error", or an unknown rule.
    """
    if duplicates not in DUPLICATE_RULES:
        raise DataError(f"duplicates={duplicates!r}; expected one of: {', '.join(DUPLICATE_RULES)}")
    key = _pair_keys(table)
    repeat = pd.Series(key).duplicated(keep="first").to_numpy()
    n_repeat = int(repeat.sum())
    if n_repeat == 0 or duplicates == "keep":
        table.attrs["duplicates_dropped"] = 0
        table.attrs["duplicates_kept"] = n_repeat
        return table
    if duplicates == "error":
        second = int(np.flatnonzero(repeat)[0])
        first = int(np.flatnonzero(key == key[second])[0])
        pairs = len(np.unique(key[repeat]))
        if lines is not None:
            where = f"lines {int(lines[first])} and {int(lines[second])}"
        else:
            where = f"rows {first} and {second}"
        user, item = table["user"].iloc[second], table["item"].iloc[second]
        raise DataError(
            f"{_count(n_repeat, 'row repeats', 'rows repeat')} a (user, item) pair "
            f"({_count(pairs, 'pair', 'pairs')}), first user {excerpt(user, 20)} item {excerpt(item, 20)} "
            f"at {where}; keep one with duplicates='last' or 'mean' (--duplicates)",
            path=path,
        )
    positions = np.arange(len(table))
    if "timestamp" in table.columns:
        try:
            times = parse_timestamps(table["timestamp"], whole=False)
        except BadTimestamp as e:
            raise DataError(e.message + _row(path, e.pos), path=path, column="timestamp") from None
        order = np.lexsort((positions, times))
    else:
        order = positions
    last = ~pd.Series(key[order]).duplicated(keep="last").to_numpy()
    kept = np.sort(order[last])
    out = table.iloc[kept].reset_index(drop=True)
    if duplicates == "mean":
        means = pd.Series(table["rating"].to_numpy(dtype="float64")).groupby(key).mean()
        out["rating"] = (
            pd.Series(means.reindex(key[kept]).to_numpy()).astype(table["rating"].dtype).to_numpy()
        )
    out.attrs = {**table.attrs, "duplicates_dropped": len(table) - len(out)}
    return out


def read_ratings(
    source: TableSource,
    *,
    user: str = "user",
    item: str = "item",
    rating: str = "rating",
    timestamp: str | None = None,
    sep: str | None = None,
    header: bool = True,
    duplicates: Duplicates = "error",
) -> pd.DataFrame:
    """A tidy ratings table with columns user, item, rating (float32) [, timestamp] + the rest.

    Every row of a text file has the header's field count (a short or long row is refused, never
    padded). Every rating must be a finite decimal number and every timestamp an integer or an ISO
    date/time (read as Unix seconds); the first bad cell is reported with its file, line and column.
    Empty user or item ids are refused the same way, and spaces around ids read from a file are
    dropped (" 2" is user 2). A table with no rows is refused. A repeated (user, item) pair follows
    `duplicates` (see `apply_duplicates`; refused by default). Files may be gzip, bzip2, xz, zstd or
    a zip of one file, by their suffix.

    Raises:
        DataError: anything wrong with the file or a cell, in one line.
    """
    wanted = [user, item, rating] + ([timestamp] if timestamp else [])
    if duplicates not in DUPLICATE_RULES:
        raise DataError(f"duplicates={duplicates!r}; expected one of: {', '.join(DUPLICATE_RULES)}")
    if not isinstance(source, pd.DataFrame):
        path = Path(source)
        check_regular_file(path)  # before any reader opens it: a FIFO would hang
        compression_of(path)  # a tar archive is refused before any reader opens it
        fast = _read_fast(path, wanted, sep, header, [timestamp] if timestamp else [])
        if fast is not None:
            tidy = {"user": fast[user].to_numpy(), "item": fast[item].to_numpy()}
            tidy["rating"] = fast[rating].to_numpy(dtype="float32")
            if timestamp:
                tidy["timestamp"] = fast[timestamp].to_numpy(dtype="int64")
            for c in fast.columns:
                if c not in wanted and c not in tidy:
                    tidy[c] = fast[c].to_numpy()
            table = pd.DataFrame(tidy)
            if duplicates != "error" or not pd.Series(_pair_keys(table)).duplicated().any():
                return apply_duplicates(table, duplicates, path=str(path))
            # a duplicate to report: the careful reader knows each row's line
    frame, path_text, lines = read_table(source, sep=sep, header=header)

    def locate(pos: int) -> int | None:
        """Line of data row `pos`."""
        return None if lines is None else int(lines[pos])

    _require_columns(frame, wanted, path_text)
    if len(frame) == 0:
        raise DataError("the table has no rows: no ratings", path=path_text)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name, col in (("user", user), ("item", item)):
        values = frame[col]
        if path_text is not None:
            values = _strip_ids(values)
        if values.dtype == object and not _all_text(values):
            unusable = np.array([not _usable_id(v) for v in values], dtype=bool)
            if unusable.any():
                pos = int(np.flatnonzero(unusable)[0])
                raise DataError(
                    f"{name} id {excerpt(values.iloc[pos])} is a {type(values.iloc[pos]).__name__}; "
                    f"ids must be numbers or text{_row(path_text, pos)}",
                    path=path_text,
                    line=locate(pos),
                    column=col,
                )
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"empty {name} id{_row(path_text, pos)}", path=path_text, line=locate(pos), column=col
            )
        if path_text is not None and not pd.api.types.is_numeric_dtype(values):
            values = _ids_as_ints(values)
        out[name] = values.to_numpy()
    out["rating"] = _numeric(frame, rating, path_text, locate).astype("float32").to_numpy()
    if timestamp:
        try:
            out["timestamp"] = parse_timestamps(frame[timestamp])
        except BadTimestamp as e:
            raise DataError(
                e.message + _row(path_text, e.pos), path=path_text, line=locate(e.pos), column=timestamp
            ) from None
    rest = {c: frame[c].to_numpy() for c in frame.columns if c not in wanted and c not in out.columns}
    table = pd.concat([out, pd.DataFrame(rest, index=out.index)], axis=1) if rest else out
    return apply_duplicates(table, duplicates, path=path_text, lines=lines)


def read_item_genres(path: str | Path) -> dict[Any, str]:
    """Each item's genres from a table with `item` and `genres` columns (CSV/TSV/Parquet).

    Item ids are read as the ratings reader reads them (plain integers become ints), so they match a
    model's vocabulary. An item listed twice with different genres is refused; an empty cell means
    no genres.

    Raises:
        DataError: not a table, a missing column, an empty item id or conflicting rows, in one line.
    """
    frame, where, lines = read_table(Path(path))
    _require_columns(frame, ["item", "genres"], where)
    items = _strip_ids(frame["item"])
    empty = items.isna().to_numpy() | (items.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        pos = int(np.flatnonzero(empty)[0])
        line = None if lines is None else int(lines[pos])
        raise DataError("empty item id", path=where, line=line, column="item")
    if not pd.api.types.is_numeric_dtype(items):
        items = _ids_as_ints(items)
    genres = frame["genres"].astype(object).where(frame["genres"].notna(), "").astype(str).str.strip()
    out: dict[Any, str] = {}
    seen: dict[Any, int] = {}
    for pos, (item, text) in enumerate(zip(items.tolist(), genres.tolist(), strict=True)):
        if item in out and out[item] != text:
            line = None if lines is None else int(lines[pos])
            first = seen[item] if lines is None else int(lines[seen[item]])
            raise DataError(
                f"item {excerpt(item)} has genres {excerpt(text)} here "
                f"and {excerpt(out[item])} on line {first}",
                path=where,
                line=line,
                column="genres",
            )
        out.setdefault(item, text)
        seen.setdefault(item, pos)
    return out
