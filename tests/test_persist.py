"""Saving: identical predictions after a round trip, atomic replacement, clear errors on damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit import CollabDataLoaders, CollabkitError, Recommender, collab_learner, load_model, set_seed
from tests.conftest import epoch_families, small_settings


@pytest.mark.parametrize("name", epoch_families())
def test_save_load_gives_identical_predictions(ratings: pd.DataFrame, tmp_path: Path, name: str) -> None:
    set_seed(1)
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    sizes = small_settings(name, width=6) if name.startswith("dot") else small_settings(name, width=2)
    learn = collab_learner(dls, model=name, settings=sizes, log=None)
    learn.fit_one_cycle(1, 5e-3)
    out = learn.export(str(tmp_path / "m"))
    assert sorted(p.name for p in Path(out).iterdir()) == [
        "config.json",
        "train.safetensors",
        "vocab.json",
        "weights.safetensors",
    ]
    rec = Recommender.load(out)
    rows = ratings.iloc[dls.valid_rows[:50]]
    before = learn.predict(rows)
    after = rec.predict(rows["user"].tolist(), rows["item"].tolist())
    np.testing.assert_array_equal(before, after)
    saved = load_model(out)
    assert saved.users.to_list() == dls.user_vocab.to_list()
    assert torch.equal(saved.train_x, dls.train.x)


def test_no_pickle_in_the_folder(ratings: pd.DataFrame, tmp_path: Path) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    learn.fit(1, 1e-3)
    out = Path(learn.export(str(tmp_path / "m")))
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "collabkit-model" and config["format_version"] == 3
    assert config["model"] == {
        "family": "dotbias",
        "n_users": dls.n_users,
        "n_items": dls.n_items,
        "settings": {"n_factors": 4, "y_range": [0.0, 5.5]},
    }
    for f in out.glob("*.safetensors"):
        header_len = int.from_bytes(f.read_bytes()[:8], "little")  # safetensors: u64 length, JSON header
        json.loads(f.read_bytes()[8 : 8 + header_len])
    json.loads((out / "vocab.json").read_text())


def test_failed_save_keeps_the_old_model(
    ratings: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    learn.fit(1, 1e-3)
    out = Path(learn.export(str(tmp_path / "m")))
    old_weights = (out / "weights.safetensors").read_bytes()

    import collabkit.persist as persist

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(persist, "dumps", boom)
    learn.fit(1, 1e-2)
    with pytest.raises(OSError, match="disk full"):
        learn.export(str(out))
    assert (out / "weights.safetensors").read_bytes() == old_weights
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path: Path, ratings: pd.DataFrame) -> None:
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not lose me")
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    with pytest.raises(CollabkitError, match="not a collabkit model folder"):
        learn.export(str(precious))
    assert (precious / "thesis.txt").read_text() == "do not lose me"


def test_damaged_or_missing_files_are_named(ratings: pd.DataFrame, tmp_path: Path) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    out = Path(collab_learner(dls, n_factors=4, log=None).export(str(tmp_path / "m")))
    (out / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CollabkitError, match="weights.safetensors: checksum does not match"):
        load_model(out)
    (out / "vocab.json").unlink()
    with pytest.raises(CollabkitError, match="vocab.json: missing"):
        load_model(out)
    with pytest.raises(CollabkitError, match="no model folder"):
        load_model(tmp_path / "nothing")


def test_own_module_exports_its_weights_and_loads_into_an_instance(
    ratings: pd.DataFrame, tmp_path: Path
) -> None:
    from collabkit import DotProduct, Learner
    from collabkit.collab import load_learner

    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = Learner(dls, DotProduct(dls.n_users, dls.n_items, 4), log=None)
    learn.fit(1, 1e-2)
    out = learn.export(str(tmp_path / "x"))
    with pytest.raises(CollabkitError, match=r"own module .*DotProduct.*load_learner\(path, model="):
        load_model(out)
    again = load_learner(out, model=DotProduct(dls.n_users, dls.n_items, 4))
    rows = ratings.iloc[:20]
    np.testing.assert_array_equal(again.predict(rows), learn.predict(rows))
    with pytest.raises(CollabkitError, match="does not fit"):
        load_learner(out, model=DotProduct(dls.n_users, dls.n_items, 5))


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_follow_the_users_umask(
    ratings: pd.DataFrame, tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    import os

    from collabkit.report import write_report

    old = os.umask(umask)
    try:
        dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
        learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
        learn.fit(1, 1e-3)
        out = Path(learn.export(str(tmp_path / "m")))
        report = write_report(load_model(out), out / "report")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == dir_mode
    for f in [*out.glob("*.*"), report.html]:
        assert f.stat().st_mode & 0o777 == file_mode, f
