"""bench/accuracy.py on a tiny table: a row per rating family, figures as `workflows.train` gives them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from collabkit.data.splits import SplitSpec
from collabkit.models import family, model_names
from collabkit.workflows import TrainConfig, train
from tests.conftest import make_ratings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import accuracy  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return make_ratings(n_users=30, n_items=20, n=400, seed=3)


@pytest.fixture(scope="module")
def board(tiny: pd.DataFrame) -> accuracy.Board:
    splits = [SplitSpec(kind="kfold", fold=i, k=2, seed=42) for i in range(2)]
    section = accuracy.Section(
        "tiny", "a tiny table", tiny, splits, "collabkit crossval --model NAME", peers=False
    )
    return accuracy.measure([section], log=lambda _: None)


def test_a_row_per_rating_family(board: accuracy.Board) -> None:
    rating = [n for n in model_names() if family(n).score_kind == "rating"]
    assert accuracy.rating_families() == rating
    models = [r["model"] for r in board.rows["tiny"]]
    assert sorted(models) == sorted(
        [f"collabkit {n}" for n in rating] + ["biases only (baseline)", "training mean (baseline)"]
    )
    for r in board.rows["tiny"]:
        assert r["kind"] == "measured" and len(r["folds"]) == 2
        for key in ("rmse", "rmse_std", "mae", "mae_std", "fit_s"):
            assert math.isfinite(r[key]), (r["model"], key)


@pytest.mark.parametrize("model", ["dotbias", "classifier"])
def test_rows_match_a_direct_train(board: accuracy.Board, tiny: pd.DataFrame, model: str) -> None:
    row = next(r for r in board.rows["tiny"] if r["model"] == f"collabkit {model}")
    for i, fold in enumerate(row["folds"]):
        split = SplitSpec(kind="kfold", fold=i, k=2, seed=42)
        res = train(tiny, TrainConfig(model=model, split=split), log=None)
        assert fold["rmse"] == pytest.approx(res.valid["rmse"], abs=1e-6)
        assert fold["mae"] == pytest.approx(res.valid["mae"], abs=1e-6)
        base = res.valid["baselines"]
        for name, key in (("biases only (baseline)", "biases"), ("training mean (baseline)", "global_mean")):
            ref = next(r for r in board.rows["tiny"] if r["model"] == name)["folds"][i]
            assert ref["rmse"] == pytest.approx(base[key]["rmse"], abs=1e-9)
            assert ref["mae"] == pytest.approx(base[key]["mae"], abs=1e-9)
    rmses = [f["rmse"] for f in row["folds"]]
    assert row["rmse"] == pytest.approx(sum(rmses) / 2)
    assert row["rmse_std"] == pytest.approx(abs(rmses[0] - rmses[1]) / 2**0.5)


def test_json_and_markdown_written(board: accuracy.Board, tmp_path: Path) -> None:
    accuracy.write_outputs(board, str(tmp_path / "a.json"), str(tmp_path / "a.md"))
    data = json.loads((tmp_path / "a.json").read_text())
    assert len(data["sections"]["tiny"]["rows"]) == len(board.rows["tiny"])
    md = (tmp_path / "a.md").read_text()
    assert "collabkit crossval --model NAME" in md
    assert all(f"| {r['model']} |" in md for r in board.rows["tiny"])


def test_latest_skipped_with_a_reason_when_absent(tmp_path: Path) -> None:
    sections, skipped = accuracy.build_sections(["latest"], [], latest=tmp_path / "absent")
    assert sections == [] and "is not here" in skipped["latest"]
    out = tmp_path / "out.json"
    argv = ["--sections", "latest", "--latest", str(tmp_path / "absent"), "--peers", "", "--json", str(out)]
    assert accuracy.main(argv) == 0
    assert "is not here" in json.loads(out.read_text())["skipped"]["latest"]


def test_cost_label() -> None:
    def row(model: str, rmse: float, fit_s: float) -> dict:
        return {"model": model, "kind": "measured", "rmse": rmse, "fit_s": fit_s}

    rows = [row("fast", 0.9010, 0.1), row("slow, as good", 0.9000, 10.0), row("slow, better", 0.8900, 50.0)]
    accuracy.label_costs(rows)
    assert "100x the fit time of fast" in rows[1]["cost"]
    assert "cost" not in rows[0] and "cost" not in rows[2]


def test_each_fold_gets_its_own_files_for_the_peers(tiny: pd.DataFrame, tmp_path: Path) -> None:
    splits = [SplitSpec(kind="kfold", fold=i, k=2, seed=42) for i in range(2)]
    section = accuracy.Section("tiny", "a tiny table", tiny, splits, "", peers=True)
    names = accuracy.write_fold_files(section, tmp_path)
    assert len(set(names)) == 2  # folds written over one another would score one fold twice
    tests = [pd.read_csv(tmp_path / f"{n}.test", sep="\t", header=None) for n in names]
    assert len(tests[0]) + len(tests[1]) == len(tiny)
    assert set(map(tuple, tests[0][[0, 1]].to_numpy())).isdisjoint(map(tuple, tests[1][[0, 1]].to_numpy()))


def test_a_variant_row_is_the_family_with_its_options(tiny: pd.DataFrame) -> None:
    model, settings = accuracy.parse_variant("bayesmf:drift=true;time_bins=4;samples=30;burn_in=10")
    assert (model, settings) == ("bayesmf", {"drift": True, "time_bins": 4, "samples": 30, "burn_in": 10})
    for bad in ("bayesmf", "bayesmf:drift"):
        with pytest.raises(ValueError, match="--variant"):
            accuracy.parse_variant(bad)
    splits = [SplitSpec(kind="kfold", fold=0, k=2, seed=42)]
    section = accuracy.Section("tiny", "a tiny table", tiny, splits, "collabkit crossval", peers=False)
    variant = ("dotbias", {"n_factors": 3})
    board = accuracy.measure([section], models=["dotbias"], log=lambda _: None, variants=[variant])
    rows = {r["model"]: r for r in board.rows["tiny"]}
    assert "collabkit dotbias -o n_factors=3" in rows and "collabkit dotbias" in rows
    res = train(tiny, TrainConfig(model="dotbias", split=splits[0], settings={"n_factors": 3}), log=None)
    assert rows["collabkit dotbias -o n_factors=3"]["folds"][0]["rmse"] == pytest.approx(
        res.valid["rmse"], abs=1e-6
    )
    assert board.settings["variants"] == ["collabkit dotbias -o n_factors=3"]
