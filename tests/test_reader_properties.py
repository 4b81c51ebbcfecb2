"""Property: whatever field counts, id spellings and duplicate pairs a file has, the reader returns
exactly the rows and values written, or refuses with a DataError naming a line; nothing else."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from collabkit import read_ratings
from collabkit.errors import DataError

SEPS = [",", "\t", "|", "::"]
# id spellings: plain ints, ones Python's int() would bend ("1_0", "+1", "007", fullwidth,
# Arabic-Indic), padded, and words
ID_SPELLINGS = st.sampled_from(
    ["1", "2", "10", " 3", "4 ", "1_0", "+1", "007", "１０", "١٠", "10.0", "-5", "a", "b c", "x_1"]
)
RATINGS = st.sampled_from(["1", "2.5", "4", "5", "0.5", "3e0"])


@st.composite
def files(draw: st.DrawFn) -> tuple[str, list[list[str]], bool, int]:
    """(separator, rows of cells, whether a timestamp column is asked for, the header's width)."""
    sep = draw(st.sampled_from(SEPS))
    with_time = draw(st.booleans())
    width = 4 if with_time or draw(st.booleans()) else 3
    n = draw(st.integers(1, 12))
    rows = []
    for _ in range(n):
        cells = [draw(ID_SPELLINGS), draw(ID_SPELLINGS), draw(RATINGS)]
        if width == 4:
            cells.append(str(draw(st.integers(800_000_000, 900_000_000))))
        if draw(st.integers(0, 9)) == 0:  # a row with a field too few or too many
            cells = cells[:-1] if draw(st.booleans()) else [*cells, "7"]
        rows.append(cells)
    if draw(st.integers(0, 4)) == 0 and len(rows) > 1:  # a duplicate pair
        rows.append([rows[0][0], rows[0][1], *rows[-1][2:]])
    return sep, rows, with_time, width


@settings(max_examples=300, deadline=None)
@given(files())
def test_every_table_is_read_exactly_or_refused_naming_a_line(
    case: tuple[str, list[list[str]], bool, int],
) -> None:
    sep, rows, with_time, width = case
    header = ["user", "item", "rating", "when"][:width]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.txt"
        path.write_text(sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows), encoding="utf-8")
        try:
            table = read_ratings(path, sep=sep, timestamp="when" if with_time else None)
        except DataError as e:
            message = str(e)
            assert "\n" not in message and message.startswith(str(path))
            assert re.match(r", line \d+: ", message[len(str(path)) :]) or re.search(
                r"at lines \d+ and \d+", message
            )
            ragged = [i for i, r in enumerate(rows) if len(r) != width]
            pairs = [(r[0].strip(), r[1].strip()) for r in rows]
            dup = len(set(pairs)) != len(pairs)
            assert ragged or dup, message  # refused only for a reason the file has
            if ragged:
                assert (
                    f"line {ragged[0] + 2}: expected {width} fields, found {len(rows[ragged[0]])}" in message
                )
            return
    # accepted: every row as written, in order, no value moved to another column
    assert all(len(r) == width for r in rows)
    assert len(table) == len(rows)
    users = [str(v) for v in table["user"]]
    items = [str(v) for v in table["item"]]
    assert users == [r[0].strip() for r in rows] and items == [r[1].strip() for r in rows]
    assert table["rating"].tolist() == [float(r[2]) for r in rows]
    if "timestamp" in table.columns:
        assert table["timestamp"].tolist() == [int(r[3]) for r in rows]
    elif width == 4:
        assert table["when"].astype(str).tolist() == [r[3] for r in rows]
    assert len(set(zip(users, items, strict=True))) == len(rows)  # duplicates are never read silently


def test_duplicate_rows_in_a_dataframe_name_rows() -> None:
    frame = pd.DataFrame({"user": [1, 2, 1], "item": [5, 5, 5], "rating": [1.0, 2.0, 3.0]})
    try:
        read_ratings(frame)
    except DataError as e:
        assert "at rows 0 and 2" in str(e)
    else:
        raise AssertionError("a duplicate pair was read")
