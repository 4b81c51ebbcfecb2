"""Loading: a ratings CSV the size of ML-25M, parsed once into a Parquet cache, then read from it.

    .venv/bin/python bench/load.py [--ratings 25000095] [--json out.json]

Writes a MovieLens-style `ratings.csv` (userId,movieId,rating,timestamp) from synthetic data in a
temporary folder, then times `collabkit.load_ratings` on it twice, each in a fresh process: the
first parses the CSV and writes the cache, the second reads the cache.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import print_table, run_job, write_json

WRITE = """
import json, sys, time
import pyarrow as pa, pyarrow.csv as pacsv
from collabkit.data.synthetic import synthetic_ratings
n, path = int(sys.argv[1]), sys.argv[2]
t = n == 25_000_095
table = synthetic_ratings(n, 162_541, 59_047) if t else synthetic_ratings(n)
table = table.rename(columns={"user": "userId", "item": "movieId"})
table["rating"] = table["rating"] / 1.0
pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), path)
print(json.dumps({"rows": len(table)}))
"""

LOAD = """
import json, sys, time, resource
from collabkit import load_ratings
t = time.perf_counter()
table = load_ratings(
    sys.argv[1], user="userId", item="movieId", rating="rating", timestamp="timestamp", cache=True
)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": len(table),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratings", type=int, default=25_000_095)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["COLLABKIT_HOME"] = str(Path(tmp) / "cache")
        csv = Path(tmp) / "ratings.csv"
        run_job(WRITE, str(args.ratings), str(csv))
        size_mb = csv.stat().st_size / 2**20
        first = run_job(LOAD, str(csv))
        second = run_job(LOAD, str(csv))
        cache_mb = sum(p.stat().st_size for p in (Path(tmp) / "cache").rglob("*.parquet")) / 2**20
    rows = [
        {"step": "parse CSV + write cache", "file_mb": size_mb, **first},
        {"step": "read cache", "file_mb": cache_mb, **second},
    ]
    print_table(rows, ["step", "rows", "file_mb", "seconds", "process_s", "peak_mb"])
    write_json(args.json, {"bench": "load", "rows": rows})


if __name__ == "__main__":
    main()
