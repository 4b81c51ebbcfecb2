"""Fuzz the model loader: mutated model folders must load or fail with one clear CollabkitError.

Each case copies a small trained model folder and damages it: flipped or random bytes, truncation,
deleted or junk files, or edits to config.json and vocab.json (also with their checksums rewritten,
so the damage gets past the integrity check and reaches the deeper checks). It then loads the
folder and, when that succeeds, recommends with it. Any exception other than CollabkitError is a
crash. Prints a table by mutation and outcome, writes JSON with --json, exits 1 on any crash.

    .venv/bin/python bench/fuzz_models.py [--cases 2000] [--seconds 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, write_json  # noqa: E402
from collabkit.checksum import file_sha256  # noqa: E402
from collabkit.persist import config_checksum  # noqa: E402

FILES = ("config.json", "vocab.json", "weights.safetensors", "train.safetensors")


def make_model(folder: Path, model: str = "dotbias") -> Path:
    """A small trained model to damage."""
    import numpy as np
    import pandas as pd

    from collabkit.data.splits import SplitSpec
    from collabkit.workflows import TrainConfig, train

    rng = np.random.default_rng(0)
    columns = {"user": rng.integers(1, 40, 600), "item": rng.integers(100, 140, 600),
               "rating": rng.integers(1, 6, 600).astype(float)}  # fmt: skip
    table = pd.DataFrame(columns).drop_duplicates(["user", "item"])
    out = folder / model
    small = {"n_factors": 4} if model in ("dot", "dotbias") else {"layers": [8]}
    config = TrainConfig(model=model, epochs=1, bs=64, settings=small, split=SplitSpec("random", 0.2))
    train(table, config, out=out, log=None)
    return out


def _rehash(folder: Path) -> None:
    try:
        doc = json.loads((folder / "config.json").read_text())
        for name in list(doc.get("files", {})):
            if (folder / name).is_file():
                doc["files"][name] = file_sha256(folder / name)
        doc["config_sha256"] = config_checksum(doc)  # past config.json's own checksum too
        (folder / "config.json").write_text(json.dumps(doc))
    except (ValueError, OSError, AttributeError, TypeError):
        pass


def _json_edit(rng: random.Random, value: Any) -> Any:
    """A random change somewhere inside a JSON value."""
    junk = [None, -1, 0, 10**12, 1e308, "x", [], {}, True, [1, 2], float("nan")]
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.25:
            del value[key]
        else:
            value[key] = _json_edit(rng, value[key]) if rng.random() < 0.6 else rng.choice(junk)
        return value
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        if rng.random() < 0.3:
            del value[i]
        else:
            value[i] = _json_edit(rng, value[i]) if rng.random() < 0.6 else rng.choice(junk)
        return value
    return rng.choice(junk)


def mutate(folder: Path, rng: random.Random) -> str:
    """Damage the folder in one random way; returns the mutation's name."""
    name = rng.choice(FILES)
    path = folder / name
    kind = rng.choice(
        ["flip", "truncate", "random", "delete", "json", "json+rehash", "bytes+rehash", "extra"]
    )
    if kind == "delete":
        path.unlink()
    elif kind == "extra":
        (folder / "weights.safetensors").write_bytes(b"\x80\x04\x95pickle")
        _rehash(folder)
    elif kind in ("json", "json+rehash") and name.endswith(".json"):  # config.json's settings too
        try:
            doc = json.loads(path.read_text())
            path.write_text(json.dumps(_json_edit(rng, doc)))
        except ValueError:
            path.write_bytes(b"{")
        if kind == "json+rehash":
            _rehash(folder)
    else:
        data = bytearray(path.read_bytes())
        if kind == "truncate":
            data = data[: rng.randrange(len(data))]
        elif kind == "random":
            data = bytearray(rng.randbytes(rng.randrange(1, 64)))
        else:
            for _ in range(rng.randint(1, 8)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        if kind == "bytes+rehash":
            _rehash(folder)
        kind = "flip" if kind in ("json", "json+rehash") else kind
    return f"{name}:{kind}"


def run(cases: int, seconds: float, seed: int = 0) -> dict[str, Any]:
    from collabkit.errors import CollabkitError
    from collabkit.persist import load_model
    from collabkit.recommend import Recommender

    rng = random.Random(seed)
    counts: Counter[tuple[str, str]] = Counter()
    crashes: list[dict[str, str]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = [make_model(Path(tmp), m) for m in ("dotbias", "nn")]
        done = 0
        while done < cases and time.perf_counter() - start < seconds:
            case = Path(tmp) / f"case{done}"
            shutil.copytree(rng.choice(base), case)
            what = mutate(case, rng)
            try:
                rec = Recommender(load_model(case))
                rec.recommend_many(list(rec.users[1:4]), n=3, unknown="popular")
                outcome = "loaded"
            except CollabkitError:
                outcome = "clear error"
            except Exception as e:  # anything else is a crash to fix
                outcome = "crash"
                crashes.append({"mutation": what, "error": f"{type(e).__name__}: {e}"[:300],
                                "where": traceback.format_exc(limit=-3)[-800:]})  # fmt: skip
            counts[(what.split(":")[1], outcome)] += 1
            shutil.rmtree(case, ignore_errors=True)
            done += 1
    rows = [{"mutation": m, "outcome": o, "cases": n} for (m, o), n in sorted(counts.items())]
    return {"cases": done, "seconds": time.perf_counter() - start, "rows": rows, "crashes": crashes[:20],
            "n_crashes": len(crashes)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    result = run(args.cases, args.seconds, args.seed)
    print_table(result["rows"], ["mutation", "outcome", "cases"])
    print(f"{result['cases']} cases in {result['seconds']:.1f} s; {result['n_crashes']} crashes")
    for c in result["crashes"][:5]:
        print(f"CRASH {c['mutation']}: {c['error']}\n{c['where']}")
    write_json(args.json, {"bench": "fuzz_models", **result})
    sys.exit(1 if result["n_crashes"] else 0)


if __name__ == "__main__":
    main()
