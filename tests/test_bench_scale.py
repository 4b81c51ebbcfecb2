"""bench/scale.py --ranking on a tiny table: a row per family asked for, sampled top-10 labelled."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_ranking_section_measures_each_family_and_labels_a_sampled_top10(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    cmd = [sys.executable, "bench/scale.py", "--ranking", "--sizes", "3000", "--models", "popular,userknn",
           "--peers", "", "--sample-above", "1000", "--top10-sample", "50", "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == ["popular", "userknn"]
    for r in rows.values():
        assert r["ratings"] == 3000 and "error" not in r
        for key in ("fit_s", "top10_all_s", "peak_mb"):
            assert math.isfinite(r[key]) and r[key] >= 0, (r["model"], key)
        assert 0.0 <= r["ndcg@10"] <= 1.0  # at or below 1M: accuracy beside the speed
    assert rows["userknn"]["top10_users"] == 50 < rows["userknn"]["users"]
    assert "top10_users" not in rows["popular"]  # every user asked, nothing scaled
