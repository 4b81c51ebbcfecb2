"""Nothing of the user's is lost and no damaged model loads: saving and loading under faults."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit import CollabDataLoaders, CollabkitError, Recommender, collab_learner, set_seed
from collabkit.bundle import trained_from_learner
from collabkit.cli import app
from collabkit.persist import config_checksum, is_model_folder, load_model, save_model

runner = CliRunner()


@pytest.fixture
def trained(ratings: pd.DataFrame):  # noqa: ANN201
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=1)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None, show_progress=False)
    learn.fit(1, 1e-2)
    return trained_from_learner(learn)


def _scores(path: Path) -> np.ndarray:
    rec = Recommender.load(path)
    return rec.recommend_many(sorted(rec.users[1:])[:10], n=5).scores


def test_train_out_never_replaces_a_folder_that_is_not_a_model(ratings: pd.DataFrame, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"my": "settings"}')  # any project has a config.json
    (project / "data.csv").write_text("precious")
    ratings.to_csv(project / "ratings.csv", index=False)
    result = runner.invoke(app, ["train", "--data", str(project / "ratings.csv"), "--out", str(project),
                                 "--epochs", "1", "-q"])  # fmt: skip
    assert result.exit_code == 2 and "not a collabkit model folder" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "data.csv", "ratings.csv"]
    assert (project / "data.csv").read_text() == "precious"


def test_a_model_folder_with_a_stranger_file_is_not_replaced(trained, tmp_path: Path) -> None:  # noqa: ANN001
    out = save_model(tmp_path / "m", trained)
    (out / "notes.txt").write_text("mine")
    assert not is_model_folder(out)
    with pytest.raises(CollabkitError, match=r"notes.txt, which collabkit did not write"):
        save_model(out, trained)
    assert (out / "notes.txt").read_text() == "mine"


def test_files_and_symlinks_are_refused(trained, tmp_path: Path) -> None:  # noqa: ANN001
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CollabkitError, match="is a file"):
        save_model(f, trained)
    real = save_model(tmp_path / "real", trained)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(CollabkitError, match="symbolic link"):
        save_model(link, trained)
    assert load_model(link).config.model == "dotbias"  # reading through a link is fine


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("drop_user", "checksum does not match"),
        ("flip_weights", "checksum does not match"),
        ("bad_json", "damaged JSON"),
    ],
)
def test_tampered_folders_do_not_load(trained, tmp_path: Path, damage: str, message: str) -> None:  # noqa: ANN001
    out = save_model(tmp_path / "m", trained)
    if damage == "drop_user":
        doc = json.loads((out / "vocab.json").read_text())
        del doc["users"][5]
        (out / "vocab.json").write_text(json.dumps(doc))
    elif damage == "flip_weights":
        data = bytearray((out / "weights.safetensors").read_bytes())
        data[-7] ^= 0xFF
        (out / "weights.safetensors").write_bytes(bytes(data))
    else:
        (out / "config.json").write_text("{not json")
    with pytest.raises(CollabkitError, match=message):
        load_model(out)


def _rewrite_consistently(out: Path, edit) -> None:  # noqa: ANN001
    """Change a file and record its new checksum, as a careful forger (or a bug) would."""
    import hashlib

    edit()
    doc = json.loads((out / "config.json").read_text())
    for name in doc["files"]:
        doc["files"][name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    doc["config_sha256"] = config_checksum(doc)  # a forger who read persist.py
    (out / "config.json").write_text(json.dumps(doc))


def test_nan_weights_and_mismatched_sizes_are_refused_even_with_good_checksums(
    trained, tmp_path: Path
) -> None:  # noqa: ANN001
    from safetensors.torch import load_file, save_file

    out = save_model(tmp_path / "m", trained)
    state = load_file(str(out / "weights.safetensors"))
    state["i_bias.weight"][3, 0] = float("nan")
    _rewrite_consistently(out, lambda: save_file(state, str(out / "weights.safetensors")))
    with pytest.raises(CollabkitError, match="NaN or infinite"):
        load_model(out)

    out2 = save_model(tmp_path / "m2", trained)
    doc = json.loads((out2 / "vocab.json").read_text())
    doc["users"] = doc["users"][:-1]
    _rewrite_consistently(out2, lambda: (out2 / "vocab.json").write_text(json.dumps(doc)))
    with pytest.raises(CollabkitError, match="users and .* items, but the model has"):
        load_model(out2)

    out3 = save_model(tmp_path / "m3", trained)
    cfg = json.loads((out3 / "config.json").read_text())
    cfg["model"]["n_items"] = 10**9  # a huge table would be allocated before the weights are read
    (out3 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CollabkitError):
        load_model(out3)


def test_a_save_killed_between_its_renames_is_put_back(trained, tmp_path: Path) -> None:  # noqa: ANN001
    out = save_model(tmp_path / "m", trained)
    before = _scores(out)
    old = out.with_name(f".m.old-{os.getpid() + 1}")
    out.rename(old)  # what a kill between `dest -> old` and `tmp -> dest` leaves
    (tmp_path / ".m.abc.tmp").mkdir()  # and a half-written temporary folder
    np.testing.assert_array_equal(_scores(out), before)  # loading puts the old model back
    assert out.is_dir() and not old.exists()
    save_model(out, trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # orphans cleaned by the next save


def test_fault_injection_always_leaves_a_loadable_model(
    trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """Fail the save at every file operation in turn: the old model (or the new) always loads."""
    import collabkit.persist as persist

    out = save_model(tmp_path / "m", trained)
    before = _scores(out)
    calls = {"n": 0, "fail_at": 0}

    def failing(real):  # noqa: ANN001, ANN202
        def op(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls["n"] += 1
            if calls["n"] == calls["fail_at"]:
                raise OSError("injected fault")
            return real(*args, **kwargs)

        return op

    monkeypatch.setattr(persist, "save_file", failing(persist.save_file))
    monkeypatch.setattr(Path, "rename", failing(Path.rename))
    monkeypatch.setattr(persist.shutil, "rmtree", failing(shutil.rmtree))
    for fail_at in range(1, 8):
        calls.update(n=0, fail_at=fail_at)
        with contextlib.suppress(OSError):
            save_model(out, trained)
        calls.update(fail_at=0)
        np.testing.assert_array_equal(_scores(out), before)  # the same weights: old or new, never half


def test_requests_cannot_ask_for_unbounded_memory(trained) -> None:  # noqa: ANN001
    rec = Recommender(trained)
    with pytest.raises(CollabkitError, match="n must be a whole number from 1 to 10,000"):
        rec.recommend(rec.users[1], 10**9)
    assert len(rec.recommend(rec.users[1], 5000)) < len(rec.items)  # clamped to the catalogue


def test_a_last_training_batch_of_one_row_trains(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings.iloc[:129], bs=64, valid_pct=0.0, seed=0)  # 129 = 2 * 64 + 1
    for model in ("nn", "classifier"):
        learn = collab_learner(dls, model=model, layers=[8], log=None, show_progress=False)
        learn.fit(1, 1e-3)
        assert np.isfinite(learn.history[-1]["train_loss"])


def test_zero_training_rows_are_refused(ratings: pd.DataFrame, tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("user,item,rating\n")
    result = runner.invoke(app, ["train", "--data", str(header_only), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and not (tmp_path / "m").exists()
    with pytest.raises(CollabkitError, match="no training rows"):
        CollabDataLoaders.from_df(ratings, train_rows=np.array([], dtype=np.int64), valid_rows=np.arange(10))


def test_weights_file_with_struct_garbage_header(trained, tmp_path: Path) -> None:  # noqa: ANN001
    out = save_model(tmp_path / "m", trained)
    junk = struct.pack("<Q", 2**40) + b"{}"  # a header length far past the file's end
    _rewrite_consistently(out, lambda: (out / "weights.safetensors").write_bytes(junk))
    with pytest.raises(CollabkitError, match="damaged weights"):
        load_model(out)
    assert torch.__version__  # the process is alive and well


def test_fuzzing_the_model_loader_finds_no_crash() -> None:
    """A short run of bench/fuzz_models.py: every mutated folder loads or fails with one clear error."""
    from bench.fuzz_models import run

    result = run(cases=200, seconds=30, seed=1)
    assert result["n_crashes"] == 0, result["crashes"][:2]
    outcomes = {r["outcome"] for r in result["rows"]}
    assert "clear error" in outcomes and result["cases"] >= 50
