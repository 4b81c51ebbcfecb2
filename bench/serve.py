"""The HTTP service under load: latency (median, p95, p99) and throughput of its main endpoints.

    .venv/bin/python bench/serve.py                       # trains a dotbias model on ML-100k first
    .venv/bin/python bench/serve.py --model runs/dotbias --json bench/results/serve.json
    .venv/bin/python bench/serve.py --cases "GET /recommend,GET /explain" --concurrency 1

GET /explain and GET /recommend are measured in the same run and set side by side (medians and the
server's CPU per request): an explanation is one pair's parts, so it should cost no more than twice
a top-10 list (it cost 17x when every call rebuilt the id resolver and scanned the training rows).

`collabkit serve` runs in its own process on 127.0.0.1 (as in production: one uvicorn worker); the
load comes from this process over keep-alive connections, one asyncio task per connection with a
minimal HTTP/1.1 client (an HTTP library would spend more of the 2 cores than the server does).
Each case (GET /recommend, POST /recommend, GET /similar, GET /explain at concurrency 1 and 32) is bounded: at
most --requests requests or --seconds seconds, after a warm-up. Targets for an ML-100k model:
median < 5 ms and p99 < 25 ms at concurrency 1; >= 1,000 req/s at concurrency 32 for GET /recommend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import ROOT, print_table, write_json  # noqa: E402

TARGETS = {"median_ms": 5.0, "p99_ms": 25.0, "rps_get_recommend_c32": 1000.0, "explain_over_recommend": 2.0}
CASES = ("GET /recommend", "POST /recommend", "GET /similar", "GET /explain")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_ml100k(out: Path) -> Path:
    """A dotbias model of ML-100k with the fast recipe (a few seconds)."""
    cmd = [sys.executable, "-m", "collabkit.cli", "train", "--data", "ml-100k", "--model", "dotbias"]
    subprocess.run([*cmd, "--out", str(out), "-q"], check=True, cwd=ROOT, timeout=600)
    return out


def requests_for(case: str, users: list[str], items: list[str]) -> list[bytes]:
    """Raw HTTP/1.1 requests for one case, varied over users and items, in a fixed order."""
    host = b"Host: 127.0.0.1\r\n"
    out = []
    for k in range(997):  # prime, so the cycle never lines up with the number of connections
        if case == "GET /recommend":
            out.append(
                f"GET /recommend?user={users[k % len(users)]}&n=10 HTTP/1.1\r\n".encode() + host + b"\r\n"
            )
        elif case == "GET /similar":
            out.append(
                f"GET /similar?item={items[k % len(items)]}&n=10 HTTP/1.1\r\n".encode() + host + b"\r\n"
            )
        elif case == "GET /explain":
            user, item = users[k % len(users)], items[(k * 7) % len(items)]
            out.append(f"GET /explain?user={user}&item={item} HTTP/1.1\r\n".encode() + host + b"\r\n")
        else:
            rated = {items[(k + j * 37) % len(items)]: 1 + (k + j) % 5 for j in range(5)}
            body = json.dumps({"ratings": rated, "n": 10}).encode()
            head = (
                f"POST /recommend HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            )
            head += "\r\n"
            out.append(head.encode() + host + b"\r\n" + body)
    return out


async def _connection(
    port: int, reqs: list[bytes], start: int, stop_at: float, budget: list[int], lat: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    k = start
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(reqs[k % len(reqs)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != b"200":
                raise RuntimeError(f"{reqs[k % len(reqs)][:60]!r} answered {status.decode()}")
            k += 1
    finally:
        writer.close()


async def _run(
    port: int, reqs: list[bytes], concurrency: int, n: int, seconds: float
) -> tuple[list[float], float]:
    lat: list[float] = []
    budget = [n]
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(
        *(_connection(port, reqs, c * 131, stop_at, budget, lat) for c in range(concurrency))
    )
    return lat, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (uvicorn's workers), in seconds."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_case(
    port: int, pid: int, reqs: list[bytes], concurrency: int, n: int, seconds: float, warmup: int
) -> dict[str, Any]:
    """One bounded case after a warm-up; the server's CPU per request is measured too, because on a
    shared 2-core machine wall-clock figures move with whatever else is running."""
    asyncio.run(_run(port, reqs, concurrency, warmup, seconds))
    server0, client0 = cpu_seconds(pid), time.process_time()
    lat, wall = asyncio.run(_run(port, reqs, concurrency, n, seconds))
    server_cpu, client_cpu = cpu_seconds(pid) - server0, time.process_time() - client0
    ms = np.array(lat) * 1e3
    return {
        "requests": len(lat),
        "seconds": wall,
        "rps": len(lat) / wall,
        "server_cpu_ms": server_cpu / len(lat) * 1e3,
        "client_cpu_ms": client_cpu / len(lat) * 1e3,
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="A model folder; default: train dotbias on ML-100k into a temporary one.")
    ap.add_argument("--requests", type=int, default=5000, help="Most requests per case.")
    ap.add_argument("--seconds", type=float, default=30.0, help="Most seconds per case.")
    ap.add_argument("--warmup", type=int, default=200, help="Requests before each case, not counted.")
    ap.add_argument("--concurrency", default="1,32", help="Connections at once, comma separated.")
    ap.add_argument("--cases", default=",".join(CASES), help=f"Comma separated, of: {', '.join(CASES)}.")
    ap.add_argument("--workers", type=int, default=1, help="collabkit serve --workers (processes).")
    ap.add_argument("--json", help="Write the results here.")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; expected some of: {', '.join(CASES)}")

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else train_ml100k(Path(tmp) / "dotbias")
        port = free_port()
        serve = [sys.executable, "-m", "collabkit.cli", "serve", str(model), "--port", str(port)]
        env = {**os.environ, "COLLABKIT_API_KEY": ""}
        log = (Path(tmp) / "serve.log").open("wb")
        server = subprocess.Popen(
            [*serve, "--genres", "none", "--workers", str(args.workers)], cwd=ROOT, env=env, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(base + "/health", timeout=2) as r:
                        health = json.load(r)
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        said = (Path(tmp) / "serve.log").read_text()[-2000:]
                        raise RuntimeError(f"collabkit serve did not start:\n{said}") from None
                    time.sleep(0.2)
            with urllib.request.urlopen(base + "/items?limit=100", timeout=5) as r:
                items = [str(x["item"]) for x in json.load(r)["items"]]
            with urllib.request.urlopen(base + "/model", timeout=5) as r:
                n_users = json.load(r)["config"].get("n_users", 944)
            users = [str(u) for u in range(1, min(int(n_users), 944))]
            rows = []
            for case in cases:
                reqs = requests_for(case, users, items)
                for c in (int(x) for x in args.concurrency.split(",")):
                    row = run_case(port, server.pid, reqs, c, args.requests, args.seconds, args.warmup)
                    rows.append({"case": case, "concurrency": c, **row})
                    print(
                        f"  {case} c={c}: {row['rps']:.0f} req/s, median {row['median_ms']:.2f} ms",
                        file=sys.stderr,
                    )
        finally:
            server.terminate()
            server.wait(timeout=20)
            log.close()
    print(
        f"model: {health['model']}, {health['n_items']:,} items, {health['n_users']:,} users; server: {base}"
    )
    columns = ["case", "concurrency", "requests", "rps", "median_ms", "p95_ms", "p99_ms", "max_ms"]
    print_table(rows, [*columns, "server_cpu_ms", "client_cpu_ms"])
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (on {os.cpu_count()} cores; the bench itself adds ~2)")
    c1 = [r for r in rows if r["concurrency"] == 1]
    get32 = [r for r in rows if r["case"] == "GET /recommend" and r["concurrency"] == 32]
    checks = {}
    if c1:
        checks["median_ms < 5 at c=1"] = all(r["median_ms"] < TARGETS["median_ms"] for r in c1)
        checks["p99_ms < 25 at c=1"] = all(r["p99_ms"] < TARGETS["p99_ms"] for r in c1)
    if get32:
        checks[">= 1000 req/s GET /recommend at c=32"] = get32[0]["rps"] >= TARGETS["rps_get_recommend_c32"]
        capacity = 1e3 / get32[0]["server_cpu_ms"] * args.workers
        print(f"GET /recommend costs the server {get32[0]['server_cpu_ms']:.2f} ms of CPU: at most "
              f"~{capacity:.0f} req/s with {args.workers} worker(s) given a free core each")  # fmt: skip
    side_by_side = explain_vs_recommend(rows)
    if side_by_side:
        print("\nGET /explain against GET /recommend (same run, same server):")
        print_table(side_by_side, list(side_by_side[0]))
        limit = TARGETS["explain_over_recommend"]
        checks[f"GET /explain median <= {limit:g}x GET /recommend at every concurrency"] = all(
            r["median_ratio"] <= limit for r in side_by_side
        )
    for name, ok in checks.items():
        print(f"{'met' if ok else 'MISSED'}: {name}")
    payload = {"bench": "serve", "model": health, "targets": TARGETS, "checks": checks, "load_average": load}
    write_json(args.json, {**payload, "rows": rows, "explain_vs_recommend": side_by_side})


def explain_vs_recommend(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per concurrency: the medians and server CPU per request of both cases, and their ratios."""
    by = {(r["case"], r["concurrency"]): r for r in rows}
    out = []
    for (case, c), exp in by.items():
        rec = by.get(("GET /recommend", c))
        if case != "GET /explain" or rec is None:
            continue
        out.append(
            {
                "concurrency": c,
                "recommend_median_ms": rec["median_ms"],
                "explain_median_ms": exp["median_ms"],
                "median_ratio": exp["median_ms"] / rec["median_ms"],
                "recommend_server_cpu_ms": rec["server_cpu_ms"],
                "explain_server_cpu_ms": exp["server_cpu_ms"],
                "cpu_ratio": exp["server_cpu_ms"] / rec["server_cpu_ms"],
            }
        )
    return out


if __name__ == "__main__":
    main()
