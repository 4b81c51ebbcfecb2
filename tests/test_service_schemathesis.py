"""Schemathesis against the live service: every documented operation, no 5xx, no answer off its schema.

The service runs on 127.0.0.1 in a thread; schemathesis (its command, as a user runs it) generates
requests from `openapi.json` (examples, coverage and fuzzing phases, at most `MAX_EXAMPLES` per
operation, a fixed seed, the whole run under `WALL_SECONDS`) and checks each answer: no server error,
a documented status code, content type and body schema, an `Allow` header that lists the path's
documented methods, schema-invalid input refused. Users and items come from a dictionary part of
the time, so requests get past 404 to the model.

Left out: `positive_data_acceptance`, which wants 2xx for any schema-valid input; a `min_count` above
every item's count is schema-valid, and /biases refuses it with a documented 422 that says so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collabkit.recommend import Recommender
from collabkit.service import create_app
from tests.test_page import serving
from tests.test_service import TWIN, train_tiny_model

pytest.importorskip("schemathesis", reason="pip install schemathesis (in the dev extra)")

MAX_EXAMPLES = 20
WALL_SECONDS = 120
KEY = 'k;ey "ü"'  # a key a header cannot carry as is: sent percent-encoded
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
    ]
)
CONFIG = f"""
[dictionaries.users]
values = ["1", "2", "7"]
[dictionaries.items]
values = ["110", "111", "Film 120 (2020)", "{TWIN}"]
[parameters]
"query.user" = {{ dictionary = "users", probability = 0.6 }}
"query.item" = {{ dictionary = "items", probability = 0.6 }}
"""


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    folder, _ = train_tiny_model(tmp_path_factory.mktemp("schemathesis"))
    return Recommender.load(folder)


def run_schemathesis(
    base: str, folder: Path, *extra: str, checks: str = CHECKS
) -> tuple[str, list[dict[str, Any]]]:
    """Schemathesis' output and the requests it sent (from its HAR report)."""
    config = folder / "schemathesis.toml"
    config.write_text(CONFIG)
    reports = folder / "reports"
    command = [
        sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file", str(config), "--no-color", "run", f"{base}/openapi.json",
        "--checks", checks, "--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
        "--request-timeout", "10", "--report", "har", "--report-dir", str(reports), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=WALL_SECONDS, cwd=folder)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    (har,) = reports.glob("har-*.json")
    return output, json.loads(har.read_text())["log"]["entries"]


def documented_operations(base: str, headers: dict[str, str] | None = None) -> int:
    import httpx

    doc = httpx.get(f"{base}/openapi.json", headers=headers, timeout=10).json()
    return sum(1 for methods in doc["paths"].values() for m in methods if m in {"get", "post"})


def test_every_documented_operation_keeps_its_contract(rec: Recommender, tmp_path: Path) -> None:
    with serving(create_app(rec)) as base:
        operations = documented_operations(base)
        output, requests = run_schemathesis(base, tmp_path)
    assert re.search(rf"Tested: {operations}\b", output), output[-3000:]
    statuses = Counter(int(r["response"]["status"]) for r in requests)
    assert len(requests) >= 10 * operations and not [s for s in statuses if s >= 500], statuses
    assert statuses[200] >= operations and statuses[422] > 0 and statuses[405] > 0  # reached the model
    assert set(statuses) <= {200, 404, 405, 413, 422}, statuses  # each documented (405: undocumented methods)


def test_the_keyed_service_keeps_its_contract_and_refuses_without_the_key(
    rec: Recommender, tmp_path: Path
) -> None:
    from urllib.parse import quote

    header = {"X-API-Key": quote(KEY, safe="")}
    with serving(create_app(rec, api_key=KEY)) as base:
        operations = documented_operations(base, header)
        output, requests = run_schemathesis(
            base, tmp_path, "--header", f"X-API-Key: {header['X-API-Key']}", checks=f"{CHECKS},ignored_auth"
        )
    assert re.search(rf"Tested: {operations}\b", output), output[-3000:]
    statuses = Counter(int(r["response"]["status"]) for r in requests)
    assert statuses[200] >= operations and statuses[401] > 0, statuses  # ignored_auth sent some without it
    assert not [s for s in statuses if s >= 500], statuses
