"""No path that removes or replaces a file touches one collabkit did not write, and no save replaces a
good model with one that can never load (the data-loss classes of the second reliability round)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit import CollabDataLoaders, collab_learner
from collabkit.cli import app
from collabkit.errors import CollabkitError
from collabkit.persist import config_checksum, load_model, save_model
from collabkit.report import write_report

runner = CliRunner()


def train_cli(csv: Path, out: Path, *extra: str) -> object:
    return runner.invoke(app, ["train", "--data", str(csv), "--out", str(out), "--epochs", "1", "-q", *extra])


def test_a_diverged_fit_never_replaces_a_good_model(ratings: pd.DataFrame, tmp_path: Path) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    learn.fit(1, 1e-3)
    good = Path(learn.export(str(tmp_path / "m")))
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    with torch.no_grad():
        learn.model.i_bias.weight[3] = float("nan")  # what a diverged fit leaves behind
    with pytest.raises(CollabkitError, match="NaN or infinite.*nothing was replaced"):
        learn.export(str(good))
    diverged = load_model(good)
    diverged.model = learn.model
    with pytest.raises(CollabkitError, match="NaN or infinite"):
        save_model(tmp_path / "other", diverged)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert not (tmp_path / "other").exists()
    load_model(good)  # still loads


@pytest.mark.parametrize("sub", ["report", "checkpoints"])
def test_a_users_file_inside_a_model_folder_stops_the_save(
    ratings_csv: Path, tmp_path: Path, sub: str
) -> None:
    out = tmp_path / "m"
    assert train_cli(ratings_csv, out).exit_code == 0
    (out / sub).mkdir(exist_ok=True)
    (out / sub / "my-notes.txt").write_text("mine")
    res = train_cli(ratings_csv, out)
    assert res.exit_code == 2 and "my-notes.txt, which collabkit did not write" in res.output
    assert (out / sub / "my-notes.txt").read_text() == "mine"


def test_collabkits_own_report_and_checkpoints_are_replaced_with_the_model(
    ratings_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    assert train_cli(ratings_csv, out, "--checkpoint-every", "1").exit_code == 0
    assert runner.invoke(app, ["interpret", str(out)]).exit_code == 0
    assert (out / "report" / "report.html").is_file()
    assert train_cli(ratings_csv, out).exit_code == 0  # all of it collabkit's: replaced


def test_a_stranger_in_a_run_folders_checkpoints_stops_the_save(ratings_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "run.json").write_text(json.dumps({"format": "collabkit-run", "config": {}}))
    (run / "checkpoints" / "plan.md").write_text("mine")
    res = train_cli(ratings_csv, run)
    assert res.exit_code == 2 and "plan.md, which collabkit did not write" in res.output
    assert (run / "checkpoints" / "plan.md").read_text() == "mine"


@pytest.mark.parametrize(
    "doc",
    [
        {"format_version": 1, "model": "dotbias"},
        {"format": "collabkit-model", "format_version": 3},  # the marker alone, no files behind it
    ],
)
def test_a_minimal_marker_is_not_enough_to_replace_a_folder(
    ratings_csv: Path, tmp_path: Path, doc: dict[str, object]
) -> None:
    folder = tmp_path / "looks-like-a-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(doc))
    res = train_cli(ratings_csv, folder)
    assert res.exit_code == 2 and "refusing to replace it" in res.output
    assert json.loads((folder / "config.json").read_text()) == doc


def test_interpret_out_writes_only_into_its_own_report_folder(ratings_csv: Path, tmp_path: Path) -> None:
    model = tmp_path / "m"
    assert train_cli(ratings_csv, model).exit_code == 0
    site = tmp_path / "site"
    site.mkdir()
    (site / "report.html").write_text("<html>my own page</html>")
    res = runner.invoke(app, ["interpret", str(model), "--out", str(site)])
    assert res.exit_code == 2 and "which collabkit did not write" in res.output
    assert (site / "report.html").read_text() == "<html>my own page</html>"
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(CollabkitError, match="photo.png, which collabkit did not write"):
        write_report(load_model(model), other)
    fresh = tmp_path / "fresh"
    assert runner.invoke(app, ["interpret", str(model), "--out", str(fresh)]).exit_code == 0
    again = runner.invoke(app, ["interpret", str(model), "--out", str(fresh)])
    assert again.exit_code == 0  # its own report: rewritten


def test_config_json_is_under_its_own_checksum(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert train_cli(ratings_csv, out).exit_code == 0
    doc = json.loads((out / "config.json").read_text())
    assert doc["config_sha256"] == config_checksum(doc)
    doc["model"]["settings"]["y_range"] = [0.0, 10.0]  # would change every prediction silently
    (out / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CollabkitError, match="settings were edited or damaged"):
        load_model(out)


@pytest.mark.parametrize("out", ["", ".", ".."])
def test_an_output_that_names_no_folder_is_refused(
    ratings_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    empty = tmp_path / "here"
    empty.mkdir()
    monkeypatch.chdir(empty)  # an empty current folder: it would pass as a new one
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--out", out, "--model", "ease"])
    assert res.exit_code == 2 and "names no folder of its own" in res.output
    assert empty.is_dir() and not any(empty.iterdir())
