"""Helpers the benchmark scripts share: run a job in a fresh process, print a table, write JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from collabkit.jsonable import dumps

ROOT = Path(__file__).resolve().parents[1]


def run_job(code: str, *args: str, python: str = sys.executable, timeout: float = 1800) -> dict[str, Any]:
    """Run `code` (which prints one JSON object last) in a new process; add wall time and peak RSS.

    A fresh process per job keeps peak memory honest and lets no job warm another's caches.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"benchmark job failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.setdefault("process_s", wall)
    return result


# A job's own peak resident memory. Not ru_maxrss: Linux carries that across fork and exec, so a
# job started by a bench that holds a big table reports the bench's size (seen: every 25M row 2,225 MB).
PEAK_MB = """
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
"""


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows as an aligned text table."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    widths = [max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(cell(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(dumps({"machine": machine(), **payload}, indent=1))  # NaN as null
        print(f"wrote {path}")
