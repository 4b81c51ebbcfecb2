"""Fuzzing: collabkit's readers against thousands of mutated files; each must give a checked result or
collabkit's own one-line error, never another exception, a hang or a wrong table.

    .venv/bin/python bench/fuzz.py [--target table] [--n 3000] [--seconds 120] [--seed 0] \
        [--keep DIR] [--json out.json]

For `--target table`, valid ratings files (comma, tab, pipe and `::` separated, with and without a
timestamp column) are mutated by one to three random operations (truncate, inject bytes or tricky
tokens, drop or double a delimiter, swap columns, junk rows, flip bits, ...) and read with
`collabkit.read_ratings`. Each outcome is classed:

    accepted     a table came back with finite float32 ratings, no empty or space-padded ids, rows > 0,
                 one row per (user, item) pair, and (for a file without quotes) exactly the file's rows:
                 as many as its non-blank lines, each as wide as the header, each rating its own cell
    refused      a DataError: one line naming the file, quoting at most a short excerpt
    bad message  a DataError that is not one short line naming the file
    bad table    a table came back that breaks one of the promises above (for --target options: the
                 command answered a line it should have refused, e.g. a non-finite value or a
                 setting the family does not take)
    crash        any other exception
    hang         no answer within --case-seconds

Prints counts by operation and outcome; exits 1 on any bad message, bad table, crash or hang (files
kept under --keep for reproduction). Other targets plug into TARGETS (see `Target`): the model-folder
loader is meant to go there as `--target model`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import print_table, write_json

OUTCOMES = ["accepted", "refused", "bad message", "bad table", "crash", "hang"]
FAILURES = {"bad message", "bad table", "crash", "hang"}
MESSAGE_SLACK = 200  # characters a refusal may add to the file's path


@dataclasses.dataclass(frozen=True)
class Target:
    """One thing to fuzz: valid inputs to start from, how to read one, and how to judge the result.

    seeds: (name, bytes, read options) of valid inputs; mutate: bytes + rng -> (operation, bytes);
    read: (path, options) -> result; check: (result, path, options) -> None or what is wrong with it;
    expected: the error types that count as a clean refusal.
    """

    seeds: Callable[[], list[tuple[str, bytes, dict[str, Any]]]]
    mutate: Callable[[bytes, np.random.Generator], tuple[str, bytes]]
    read: Callable[[Path, dict[str, Any]], Any]
    check: Callable[[Any, Path, dict[str, Any]], str | None]
    expected: tuple[type[BaseException], ...]
    suffix: str = ".csv"
    slack: int = 200  # characters a refusal may add to the input's path
    case_seconds: int = 0  # a case longer than this (or --case-seconds, the larger) is a hang


# --- the table reader -----------------------------------------------------------------------------

TOKENS = [b"True", b"false", b"0x5", b"0X1F", b"nan", b"NaN", b"inf", b"-Infinity", b"1e39", b"1e400",
          b"", b" ", b"\x00", b'"', b'""', b"'", b"1_000", b"\xef\xbb\xbf", b"\xff\xfe", b"-", b"+", b".",
          b"e5", b"\xd9\xa3", b"NA", b"null", b"#", b"9" * 30, b"a" * 300, b"\r", b"\t", b"::", b"|",
          b"\\"]  # fmt: skip


def _table_seeds() -> list[tuple[str, bytes, dict[str, Any]]]:
    rng = np.random.default_rng(7)
    rows = [(int(u), int(i), float(r) / 2, 880_000_000 + int(t)) for u, i, r, t in
            zip(rng.integers(1, 40, 60), rng.integers(1, 30, 60), rng.integers(1, 11, 60),
                rng.integers(0, 10**6, 60), strict=True)]  # fmt: skip
    rows = list({(u, i): (u, i, r, t) for u, i, r, t in rows}.values())  # one rating per pair: valid
    seeds = []
    for name, sep in (("comma", ","), ("tab", "\t"), ("pipe", "|"), ("double colon", "::")):
        lines = [sep.join(["user", "item", "rating", "when"])]
        lines += [sep.join(str(v) for v in row) for row in rows]
        blob = ("\n".join(lines) + "\n").encode()
        seeds.append((name, blob, {"timestamp": "when"}))
        seeds.append((name + ", no timestamp", blob, {}))
    text_ids = "user,item,rating\n" + "".join(f"u{u:03d},film {i},{r}\n" for u, i, r, _ in rows)
    seeds.append(("text ids", text_ids.encode(), {}))
    return seeds


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _mutate_table(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    ops = []
    for _ in range(1 if rng.random() < 0.6 else int(rng.integers(2, 4))):  # mostly one, to see each alone
        op = str(rng.choice(OPERATIONS))
        data = MUTATORS[op](bytearray(data), rng)
        ops.append(op)
    return (ops[0] if len(set(ops)) == 1 else "several"), data


def _at(data: bytearray, rng: np.random.Generator) -> int:
    return int(rng.integers(0, len(data) + 1))


def _truncate(d: bytearray, rng: np.random.Generator) -> bytes:
    return bytes(d[: _at(d, rng)])


def _inject_bytes(d: bytearray, rng: np.random.Generator) -> bytes:
    at = _at(d, rng)
    d[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
    return bytes(d)


def _inject_token(d: bytearray, rng: np.random.Generator) -> bytes:
    """Replace one random cell with a tricky token (or put it anywhere)."""
    lines = _lines(bytes(d))
    token = TOKENS[int(rng.integers(len(TOKENS)))]
    n = int(rng.integers(len(lines)))
    for sep in (b"::", b"\t", b"|", b","):
        if sep in lines[n]:
            cells = lines[n].split(sep)
            cells[int(rng.integers(len(cells)))] = token
            lines[n] = sep.join(cells)
            return b"\n".join(lines)
    at = _at(d, rng)
    d[at:at] = token
    return bytes(d)


def _drop_delimiter(d: bytearray, rng: np.random.Generator) -> bytes:
    spots = [i for i, b in enumerate(d) if b in b",\t|:"]
    if spots:
        del d[spots[int(rng.integers(len(spots)))]]
    return bytes(d)


def _double_delimiter(d: bytearray, rng: np.random.Generator) -> bytes:
    spots = [i for i, b in enumerate(d) if b in b",\t|:"]
    if spots:
        at = spots[int(rng.integers(len(spots)))]
        d[at:at] = d[at : at + 1]
    return bytes(d)


def _swap_columns(d: bytearray, rng: np.random.Generator) -> bytes:
    sep = next((s for s in (b"::", b"\t", b"|", b",") if s in d), b",")
    rows = [line.split(sep) for line in _lines(bytes(d))]
    a, b = (int(x) for x in rng.permutation(4)[:2])
    for row in rows:
        if len(row) > max(a, b):
            row[a], row[b] = row[b], row[a]
    return b"\n".join(sep.join(row) for row in rows)


def _junk_rows(d: bytearray, rng: np.random.Generator) -> bytes:
    junk = [bytes(rng.integers(32, 127, int(rng.integers(0, 40)), dtype=np.uint8)) for _ in range(3)]
    lines = _lines(bytes(d))
    at = int(rng.integers(len(lines) + 1))
    return b"\n".join(lines[:at] + junk + lines[at:])


def _flip_bits(d: bytearray, rng: np.random.Generator) -> bytes:
    for _ in range(int(rng.integers(1, 8))):
        if d:
            d[int(rng.integers(len(d)))] ^= 1 << int(rng.integers(8))
    return bytes(d)


def _line_endings(d: bytearray, rng: np.random.Generator) -> bytes:
    new = [b"\r\n", b"\r", b"\n\n", b""][int(rng.integers(4))]
    return bytes(d).replace(b"\n", new)


def _header(d: bytearray, rng: np.random.Generator) -> bytes:
    lines = _lines(bytes(d))
    choice = int(rng.integers(4))
    if choice == 0:
        return b"\n".join(lines[1:])  # no header
    if choice == 1:
        return lines[0] + b"\n"  # header only
    if choice == 2:
        return b"\n".join([lines[0], *lines])  # header twice
    return b"\xef\xbb\xbf" + bytes(d)  # a byte-order mark


def _empty(d: bytearray, rng: np.random.Generator) -> bytes:
    return [b"", b"\n", b" ", b"\x00" * 64][int(rng.integers(4))]


def _repeat_lines(d: bytearray, rng: np.random.Generator) -> bytes:
    lines = _lines(bytes(d))
    n = int(rng.integers(len(lines)))
    return b"\n".join(lines[: n + 1] + [lines[n]] * int(rng.integers(1, 50)) + lines[n + 1 :])


MUTATORS: dict[str, Callable[[bytearray, np.random.Generator], bytes]] = {
    "truncate": _truncate,
    "inject bytes": _inject_bytes,
    "inject token": _inject_token,
    "drop delimiter": _drop_delimiter,
    "double delimiter": _double_delimiter,
    "swap columns": _swap_columns,
    "junk rows": _junk_rows,
    "flip bits": _flip_bits,
    "line endings": _line_endings,
    "header": _header,
    "empty": _empty,
    "repeat lines": _repeat_lines,
}
OPERATIONS = list(MUTATORS)


def _read_table(path: Path, options: dict[str, Any]) -> Any:
    from collabkit import read_ratings

    return read_ratings(path, **options)


def _check_table(table: Any, path: Path, options: dict[str, Any]) -> str | None:
    if len(table) == 0:
        return "no rows"
    if str(table["rating"].dtype) != "float32" or not np.isfinite(table["rating"].to_numpy()).all():
        return "a rating that is not a finite float32"
    for col in ("user", "item"):
        for v in table[col]:
            if v is None or (isinstance(v, float) and v != v) or str(v).strip() != str(v) or str(v) == "":
                return f"a bad {col} id {str(v)[:40]!r}"
    if table[["user", "item"]].duplicated().any():
        return "a (user, item) pair twice: duplicates read silently"
    return _against_the_file(table, path)


def _against_the_file(table: Any, path: Path) -> str | None:
    """An independent reading of an unquoted file: every non-blank line as wide as the header, and
    each accepted rating equal to its own line's rating cell (a padded or shifted row shows here)."""
    data = path.read_bytes()
    if b'"' in data:
        return None  # quoting: this plain oracle cannot say
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    head = text.split("\n", 1)[0]
    sep = next((s for s in ("\t", "::", "|", ",") if s in head), ",")
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line != ""]
    names = lines[0].split(sep)
    rows = [line.split(sep) for line in lines[1:]]
    for n, row in enumerate(rows, start=2):
        if len(row) != len(names):
            return f"accepted, but record {n} has {len(row)} fields where the header has {len(names)}"
    if len(rows) != len(table):
        return f"{len(table)} rows read from {len(rows)} records"
    if "rating" not in names:
        return None
    at = names.index("rating")
    try:
        want = np.array([float(row[at]) for row in rows], dtype=np.float32)
    except ValueError:
        return None
    got = table["rating"].to_numpy()
    if not np.array_equal(want, got):
        n = int(np.flatnonzero(want != got)[0])
        return f"record {n + 2}: rating {got[n]!r} where its cell says {rows[n][at][:20]!r} (shifted?)"
    return None


def _table_target() -> Target:
    from collabkit.errors import DataError

    return Target(_table_seeds, _mutate_table, _read_table, _check_table, (DataError,))


# --- the command's options ---------------------------------------------------------------------------
# A case is a command line (JSON list) with placeholders for a small trained model ({MODEL}), a small
# ratings file ({CSV}) and a fresh output folder ({OUT}); a mutation puts a tricky value into one
# option, drops or repeats one, or adds one the command does not take. The command must answer (exit
# 0) or refuse in one line (exit 2, `collabkit: error: ...`, or click's own usage error for an option
# of the wrong type); an exit 70, a traceback or any other exit is a crash.

OPTION_TOKENS = ["nan", "inf", "-inf", "-1", "0", "1e400", str(10**21), "", " ", "x", "1_0", "0x10",
                 "\u0661\u0660", "\uff11", "True", "None", "a" * 300, "../", "/dev/null", "-o",
                 "--help=1"]  # fmt: skip
OPTION_SEEDS: list[list[str]] = [
    ["train", "--data", "{CSV}", "--out", "{OUT}", "--epochs", "1", "--factors", "4", "-q"],
    ["train", "--data", "{CSV}", "--out", "{OUT}", "--model", "nn", "--epochs", "1", "--layers", "8", "-q"],
    ["train", "--data", "{CSV}", "--out", "{OUT}", "--model", "ease", "-o", "l2=5", "-q"],
    ["train", "--data", "{CSV}", "--out", "{OUT}", "--model", "ials", "--factors", "4", "-o", "iterations=2"],
    ["train", "--data", "{CSV}", "--out", "{OUT}", "--split", "last", "--last-n", "1", "--epochs", "1", "-q"],
    ["evaluate", "{MODEL}", "--data", "{CSV}", "--ranking", "--top-k", "5", "--relevant", "4"],
    ["recommend", "{MODEL}", "--user", "3", "-n", "5", "--min-count", "1"],
    ["recommend", "{MODEL}", "--rate", "100=5", "--rate", "101=1", "--strength", "3", "-n", "5"],
    ["similar", "{MODEL}", "100", "-n", "5", "--min-count", "2"],
    ["predict", "{MODEL}", "--user", "3", "--item", "100"],
    ["interpret", "{MODEL}", "-n", "3", "--out", "{OUT}"],
    ["crossval", "--data", "{CSV}", "--k", "2", "--epochs", "1"],
    ["lr-find", "--data", "{CSV}", "--num-it", "5", "--plot", "{OUT}/lr.png"],
    ["models", "ials"],
]


class _Refused(Exception):
    """The command refused the case in one line (exit 2)."""


def _option_seeds() -> list[tuple[str, bytes, dict[str, Any]]]:
    import json

    return [(seed[0], json.dumps(seed).encode(), {}) for seed in OPTION_SEEDS]


def _mutate_options(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    import json

    args: list[str] = json.loads(data)
    flags = [i for i, a in enumerate(args) if a.startswith("-") and i + 1 < len(args)
             and not args[i + 1].startswith("-") and args[i + 1] not in ("{CSV}",)]  # fmt: skip
    op = ["value", "value", "drop", "repeat", "unknown", "model"][int(rng.integers(6))]
    if op == "value" and flags:
        args[flags[int(rng.integers(len(flags)))] + 1] = OPTION_TOKENS[int(rng.integers(len(OPTION_TOKENS)))]
    elif op == "drop" and flags:
        del args[flags[int(rng.integers(len(flags)))] + 1]
    elif op == "repeat" and flags:
        i = flags[int(rng.integers(len(flags)))]
        args += [args[i], OPTION_TOKENS[int(rng.integers(len(OPTION_TOKENS)))]]
    elif op == "model" and args[0] in ("train", "crossval", "lr-find"):
        args += [
            "--model",
            ["", "DOT", "dotbias ", "popular", "bpr", "classifier", "x"][int(rng.integers(7))],
        ]
    else:
        op = "unknown"
        args += [["--nope", "1"], ["-o", "junk=1"], ["-o", "=="], ["--step", "fused"]][int(rng.integers(4))]
    return op, json.dumps(args).encode()


_OPTION_FILES: dict[str, str] = {}


def _option_files(tmp: Path) -> dict[str, str]:
    """A small ratings file and a model trained on it, made once per run."""
    if not _OPTION_FILES:
        import pandas as pd

        from collabkit.workflows import TrainConfig, train

        rng = np.random.default_rng(0)
        pairs = rng.choice(40 * 30, size=500, replace=False)
        table = pd.DataFrame({"user": pairs // 30 + 1, "item": pairs % 30 + 100,
                              "rating": rng.integers(1, 6, 500).astype(float)})  # fmt: skip
        csv = tmp / "ratings.csv"
        table.to_csv(csv, index=False)
        train(table, TrainConfig(epochs=1, settings={"n_factors": 4}), out=tmp / "model", log=None)
        _OPTION_FILES.update({"{CSV}": str(csv), "{MODEL}": str(tmp / "model")})
    return _OPTION_FILES


def _run_options(path: Path, options: dict[str, Any]) -> Any:
    import json
    import shutil

    from typer.testing import CliRunner

    from collabkit.cli import app

    files = _option_files(path.parent)
    out = path.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    args = [a.replace("{OUT}", str(out)) for a in json.loads(path.read_bytes())]
    args = [files.get(a, a) for a in args]
    here = Path.cwd()
    scratch = path.parent / "cwd"  # a relative path in a case (--out inf) lands here, not in the repo
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    os.chdir(scratch)
    try:
        res = CliRunner().invoke(app, args)
    finally:
        os.chdir(here)
    text = (res.stderr or res.output or "").strip()
    if res.exit_code == 0:
        return res
    lines = [line for line in text.splitlines() if line.strip()]
    if res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("collabkit: error:"):
        raise _Refused(f"{path}: {lines[0][len('collabkit: error: ') :]}")
    usage = "Usage:" in text or "Error ─" in text  # click's own refusal: an option's type or arity
    if res.exit_code == 2 and usage and "Traceback" not in text:
        raise _Refused(f"{path}: usage: {' '.join(text.split())[-150:]}")
    raise RuntimeError(f"exit {res.exit_code}: {' '.join(text.split())[-300:]}")


NON_FINITE = {"nan", "inf", "-inf", "1e400"}
NUMERIC_OPTIONS = {"--lr", "--wd", "--valid-pct", "--cutoff", "--relevant", "--strength",
                   "--popularity-penalty", "--epochs", "--bs", "--factors", "-n", "--min-count", "--top-k",
                   "--k", "--seed", "--num-it", "--last-n", "--fold", "--y-range",
                   "--checkpoint-every"}  # fmt: skip


def _check_options(result: Any, path: Path, options: dict[str, Any]) -> str | None:
    """What an answered (exit 0) command line should not have been answered: a non-finite value, or
    an option or setting the command or family does not take, silently accepted."""
    import json

    args = json.loads(path.read_bytes())
    taken = [f"{flag} {value}" for flag, value in zip(args, args[1:], strict=False)
             if value in NON_FINITE and flag in NUMERIC_OPTIONS]  # fmt: skip
    if taken:
        return f"accepted the non-finite value in {taken[0]!r}"
    if "junk=1" in args:
        return "accepted -o junk=1, a setting no family takes"
    model = args[args.index("--model") + 1] if "--model" in args[:-1] else "dotbias"
    if "--step" in args and model not in ("dot", "dotbias", "nn", "classifier"):
        return f"accepted --step for {model}, which fits itself"
    return None


def _options_target() -> Target:
    # a case trains a model or a few (crossval --k 1_0 is ten folds): give it a minute
    return Target(_option_seeds, _mutate_options, _run_options, _check_options, (_Refused,), ".json",
                  slack=1000, case_seconds=60)  # fmt: skip


TARGETS: dict[str, Callable[[], Target]] = {"table": _table_target, "options": _options_target}


# --- the loop ----------------------------------------------------------------------------------------


class _Hang(BaseException):  # not an Exception: no handler inside a case swallows it
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hang


def _judge(target: Target, path: Path, options: dict[str, Any], case_seconds: int) -> tuple[str, str]:
    """(outcome, detail) of reading one file."""
    signal.alarm(max(case_seconds, target.case_seconds))
    try:
        result = target.read(path, options)
    except _Hang:
        return "hang", f"no answer within {max(case_seconds, target.case_seconds)} s"
    except target.expected as e:
        message = str(e)
        if (
            "\n" in message
            or not message.startswith(str(path))
            or len(message) > len(str(path)) + target.slack
        ):
            return "bad message", message[:300]
        return "refused", message[len(str(path)) :][:120]
    except Exception as e:  # the failures this script exists to find
        return "crash", f"{type(e).__name__}: {' '.join(str(e).split())[:200]} @ {_where(e)}"
    finally:
        signal.alarm(0)
    problem = target.check(result, path, options)
    return ("bad table", problem) if problem else ("accepted", "")


def _reason(detail: str) -> str:
    """A refusal's kind: its words with the location, quoted excerpts and numbers taken out."""
    words = re.sub(r"^(, line \d+)?(, column '[^']*')?: ", "", detail)
    return re.sub(r"\d+", "N", re.sub(r"'.*'", "...", words))[:70]


def _where(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=[*TARGETS, "model"], default="table")
    parser.add_argument("--n", type=int, default=3000, help="mutated files to try")
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="stop after this long even if --n is not reached"
    )
    parser.add_argument("--case-seconds", type=int, default=10, help="a read longer than this is a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="copy failing files here, for reproduction")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.target == "model":  # the model-folder loader: bench/fuzz_models.py's cases, classed here
        _fuzz_models(args)
        return

    target = TARGETS[args.target]()
    seeds = target.seeds()
    rng = np.random.default_rng(args.seed)
    signal.signal(signal.SIGALRM, _on_alarm)
    counts: Counter[tuple[str, str]] = Counter()
    reasons: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    start = time.perf_counter()
    done = 0
    with tempfile.TemporaryDirectory(prefix="collabkit-fuzz-") as tmp:
        for done in range(1, args.n + 1):  # noqa: B007  (done is read after the loop)
            name, blob, options = seeds[int(rng.integers(len(seeds)))]
            op, mutated = target.mutate(blob, rng)
            path = Path(tmp) / f"case{target.suffix}"
            path.write_bytes(mutated)
            outcome, detail = _judge(target, path, options, args.case_seconds)
            counts[(op, outcome)] += 1
            if outcome == "refused":
                reasons[_reason(detail)] += 1
            if outcome in FAILURES:
                case = {"case": done, "seed": name, "operation": op, "options": options, "outcome": outcome,
                        "detail": detail, "bytes": mutated[:400].decode("latin-1")}  # fmt: skip
                failures.append(case)
                if args.keep:
                    Path(args.keep).mkdir(parents=True, exist_ok=True)
                    (Path(args.keep) / f"{outcome.replace(' ', '-')}-{done}{target.suffix}").write_bytes(
                        mutated
                    )
            if time.perf_counter() - start > args.seconds:
                break
    seconds = time.perf_counter() - start

    ops = sorted({op for op, _ in counts})
    rows = [{"operation": op, **{o: counts[(op, o)] for o in OUTCOMES}} for op in ops]
    totals = {o: sum(counts[(op, o)] for op in ops) for o in OUTCOMES}
    rows.append({"operation": "total", **totals})
    print(
        f"{args.target}: {done} mutated files in {seconds:.1f} s ({done / seconds:.0f}/s), seed {args.seed}"
    )
    print_table(rows, ["operation", *OUTCOMES])
    print("\nmost common refusals:")
    for reason, n in reasons.most_common(8):
        print(f"  {n:5d}  {reason}")
    for case in failures[:10]:
        where = f"case {case['case']}, {case['seed']}, {case['operation']}"
        print(f"\n{case['outcome']} ({where}): {case['detail']}")
    write_json(
        args.json,
        {"target": args.target, "files": done, "seconds": seconds, "seed": args.seed, "totals": totals,
         "by_operation": rows[:-1], "refusals": dict(reasons.most_common(20)), "failures": failures[:50]},
    )  # fmt: skip
    sys.exit(1 if any(totals[o] for o in FAILURES) else 0)


def _fuzz_models(args: argparse.Namespace) -> None:
    """Damaged model folders (fuzz_models.py): loaded and used (accepted), a CollabkitError (refused),
    or anything else (crash)."""
    from fuzz_models import run

    result = run(args.n, args.seconds, args.seed)
    names = {"loaded": "accepted", "clear error": "refused", "crash": "crash"}
    counts: Counter[tuple[str, str]] = Counter()
    for row in result["rows"]:
        counts[(row["mutation"], names[row["outcome"]])] += row["cases"]
    ops = sorted({op for op, _ in counts})
    rows = [{"operation": op, **{o: counts[(op, o)] for o in OUTCOMES}} for op in ops]
    totals = {o: sum(counts[(op, o)] for op in ops) for o in OUTCOMES}
    rows.append({"operation": "total", **totals})
    print(f"model: {result['cases']} damaged model folders in {result['seconds']:.1f} s, seed {args.seed}")
    print_table(rows, ["operation", *OUTCOMES])
    for crash in result["crashes"][:10]:
        print(f"\ncrash ({crash['mutation']}): {crash['error']}")
    write_json(args.json, {"target": "model", "files": result["cases"], "seconds": result["seconds"],
                           "seed": args.seed, "totals": totals, "by_operation": rows[:-1],
                           "failures": result["crashes"][:50]})  # fmt: skip
    sys.exit(1 if totals["crash"] else 0)


if __name__ == "__main__":
    main()
