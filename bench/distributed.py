"""Throughput of training with 1 and 2 processes under torchrun, side by side in one run.

    .venv/bin/python bench/distributed.py [--ratings 1000000] [--json out.json]

Two runs on the same synthetic MovieLens-shaped table (`synthetic_ratings(N)`, seed 0, written once
as CSV), each through `collabkit train` (1 process) and `torchrun --nproc-per-node 2 -m collabkit.cli
train` (2 processes on this machine, gloo on 127.0.0.1):
- `ials`: 64 factors, 15 sweeps (its defaults); each process solves its share of the users and of
  the items. The row gives fit seconds and rated cells solved per second (nnz x sweeps / fit s).
- `dotbias`, `--recipe chapter --epochs 1 --bs 8192` (1 process) against `--bs 4096` per process
  (2 processes): the same global batch, so the same optimisation; ratings per second of the epoch.

Each process is given one thread (OMP_NUM_THREADS=1), so "2 processes" is two cores against one;
the ratio is the speed-up the sharding gives. Fit seconds come from the command's `--json`
(`fit_seconds`: training only, not reading the table or starting torch).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, print_table, write_json  # noqa: E402

RUNS = {
    "ials": ["--model", "ials"],
    "dotbias": ["--model", "dotbias", "--recipe", "chapter", "--epochs", "1"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(args: list[str], procs: int, cwd: Path) -> dict[str, Any]:
    base = [sys.executable, "-m", "collabkit.cli", "train", *args, "--json", "--quiet"]
    if procs > 1:
        base = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}", *base[1:],
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(base, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(base)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    from collabkit.data.synthetic import synthetic_ratings

    rows = []
    with tempfile.TemporaryDirectory(prefix="collabkit-dist-") as tmp:
        cwd = Path(tmp)
        table = synthetic_ratings(a.ratings, seed=0)
        table.to_csv(cwd / "r.csv", index=False)
        for name, extra in RUNS.items():
            first = None
            for procs in (1, 2):
                bs = [] if name == "ials" else ["--bs", str(8192 // procs)]
                res = train(["--data", "r.csv", *extra, *bs, "--out", f"{name}-{procs}"], procs, cwd)
                seconds = float(res["fit_seconds"])
                work = res["n_train"] * (15 if name == "ials" else 1)
                first = first or seconds
                rows.append({
                    "model": name, "processes": procs, "fit_s": round(seconds, 2),
                    "per_s": f"{work / seconds:,.0f}", "speed-up": f"{first / seconds:.2f}x",
                    "world_size": res.get("world_size", 1),
                })  # fmt: skip
    print(f"{a.ratings:,} synthetic ratings; 1 thread per process; ials: rated cells x sweeps per second, "
          "dotbias: ratings per second")  # fmt: skip
    print_table(rows, ["model", "processes", "world_size", "fit_s", "per_s", "speed-up"])
    write_json(a.json, {"machine": machine(), "ratings": a.ratings, "rows": rows})


if __name__ == "__main__":
    main()
