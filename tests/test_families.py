"""Each family owns its settings, its recipes, its trainer and its capabilities, in its one file.

What used to go wrong: `train --model ials --factors 8` trained 64 factors; config.json recorded a
batch size, learning rate and y_range for models that used none of them; `-o l2=5` was stored for
dotbias; crossval printed epochs for a closed-form model. These tests hold each of those shut for
every registered family.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

import collabkit.models
import collabkit.workflows as workflows
from collabkit.cli import app
from collabkit.defaults import BUILT_IN_FAMILIES
from collabkit.errors import CollabkitError
from collabkit.models import CollabModel, FamilySettings, ModelConfig, ModelName, family, model_names
from collabkit.persist import load_model

runner = CliRunner()
BUILT_IN = [n for n in model_names() if family(n).__module__.startswith("collabkit.models.")]


def test_model_name_literal_lists_every_built_in_family() -> None:
    assert list(get_args(ModelName)) == BUILT_IN == list(BUILT_IN_FAMILIES)  # the command's list too
    assert len(BUILT_IN) == 15


@pytest.mark.parametrize("name", model_names())
def test_a_family_file_holds_its_four_roles(name: str) -> None:
    fam = family(name)
    # 1. typed settings, declared in the family's own file (or a family it builds on)
    assert issubclass(fam.Settings, FamilySettings)
    assert fam.Settings.model_config.get("extra") == "forbid"
    # 3. its trainer: the Learner's one-cycle loop (with recipes) or its own fit
    if fam.recipes:
        assert fam.trains_by_gradient and "fast" in fam.recipes  # the default recipe
        if fam.__module__.startswith("collabkit.models."):
            assert fam.recipes["chapter"].model_dump() == {"bs": 64, "epochs": 5, "lr": 5e-3, "wd": 0.1,
                                                          "keep_best": False}  # fmt: skip
    else:
        assert fam.fit_direct is not CollabModel.fit_direct
    # 4. capabilities declared, and true to the methods
    caps = fam.capabilities()
    assert caps.lr_find == bool(fam.recipes)
    assert caps.ratings == (fam.score_kind == "rating")
    if caps.explain:
        assert fam.explain is not CollabModel.explain
    if caps.fold_in:
        assert fam.fold_in is not CollabModel.fold_in
    # no recipe table or per-model default outside the family's file
    assert "Recipe(" not in inspect.getsource(workflows)


@pytest.mark.parametrize("name", model_names())
def test_settings_round_trip_through_json(name: str) -> None:
    extra = {"levels": [1.0, 2.0, 3.0]} if "levels" in family(name).Settings.model_fields else {}
    config = ModelConfig(name, 5, 7, **extra)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.settings == config.settings
    assert set(config.to_dict()) == {"family", "n_users", "n_items", "settings"}


def test_unknown_and_out_of_range_settings_name_what_the_family_takes() -> None:
    with pytest.raises(CollabkitError, match=r"dotbias: unknown setting 'l2'; it takes: n_factors=50"):
        ModelConfig("dotbias", 3, 3, l2=5)
    with pytest.raises(CollabkitError, match=r"ials: setting n_factors=0"):
        ModelConfig("ials", 3, 3, n_factors=0)
    with pytest.raises(CollabkitError, match=r"ease: setting l2=nan must be a finite number"):
        ModelConfig("ease", 3, 3, l2=float("nan"))
    with pytest.raises(CollabkitError, match=r"less than or equal to 100000"):
        ModelConfig("ials", 3, 3, n_factors=10**12)  # would allocate terabytes
    with pytest.raises(CollabkitError, match="family, n_users, n_items and settings"):
        ModelConfig.from_dict({"model": "dotbias", "n_users": 3, "n_items": 3, "n_factors": 4})


def test_ials_factors_option_is_used_and_recorded(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ials"
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--model", "ials", "--factors", "8",
                              "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    trained = load_model(out)
    assert trained.model.user_factors.shape[1] == 8
    doc = json.loads((out / "config.json").read_text())
    assert doc["model"]["settings"] == {"n_factors": 8, "reg": 30.0, "alpha": 0.5, "iterations": 15,
                                        "values": "rating", "min_rating": None}  # fmt: skip
    used = doc["results"]["settings"]
    assert not {"bs", "lr", "wd", "epochs", "y_range", "options", "recipe"} & set(used)


def test_dotbias_refuses_another_familys_option(ratings_csv: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--model", "dotbias", "-o", "l2=5",
                              "--out", str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 2 and "unknown setting 'l2'" in res.output
    assert not (tmp_path / "m").exists()


def test_crossval_of_a_closed_form_model_prints_no_epochs(ratings_csv: Path) -> None:
    res = runner.invoke(app, ["crossval", "--data", str(ratings_csv), "--model", "ease", "--k", "2"])
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first.startswith("ease: l2 500") and "bs" not in first and "epochs" not in first


def test_bpr_takes_epochs_as_its_own_setting(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "bpr"
    res = runner.invoke(app, ["train", "--data", str(ratings_csv), "--model", "bpr", "--epochs", "2",
                              "--factors", "4", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    settings = load_model(out).config.settings.used()
    assert settings["epochs"] == 2 and settings["n_factors"] == 4


def test_older_model_folders_are_refused_with_the_way_out(ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert runner.invoke(app, ["train", "--data", str(ratings_csv), "--out", str(out), "-q"]).exit_code == 0
    doc = json.loads((out / "config.json").read_text())
    doc["format_version"] = 2
    (out / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CollabkitError, match="written by an older collabkit; train the model again"):
        load_model(out)


def test_every_family_is_in_the_models_package() -> None:
    assert set(BUILT_IN) <= set(dir(collabkit.models)) | set(get_args(ModelName))


def test_models_command_lists_every_family_with_its_settings() -> None:
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {row["family"]: row for row in json.loads(res.stdout)["families"]}
    assert list(rows) == list(model_names())
    for name, row in rows.items():
        assert list(row["settings"]) == list(family(name).Settings.model_fields)
        assert row["capabilities"] == family(name).capabilities().to_dict()
    text = runner.invoke(app, ["models", "ials"]).output
    assert "-o n_factors=64" in text and "--recipe" not in text
    assert runner.invoke(app, ["models", "nope"]).exit_code == 2


@pytest.mark.parametrize(
    ("name", "settings", "words"),
    [
        (
            "ials",
            {"reg": 1e-300, "alpha": 1e300, "n_factors": 4},
            "ials: the alternating solve failed numerically",
        ),
        ("bpr", {"lr": 1e30, "n_factors": 2, "epochs": 3, "bs": 2}, "bpr: training"),
    ],
)
def test_a_fit_that_fails_numerically_names_its_settings(name: str, settings: dict, words: str) -> None:
    import torch

    from collabkit.models import build_model

    x = torch.tensor([[1, 1], [1, 2], [2, 1], [2, 3], [3, 2]])
    y = torch.tensor([5.0, 4.0, 3.0, 5.0, 1.0])
    model = build_model(ModelConfig(name, 4, 4, **settings))
    with pytest.raises(CollabkitError, match=words) as err:
        model.fit_direct(x, y)
    assert all(f"{k}=" in str(err.value) for k in settings if k in ("reg", "alpha", "lr"))


def test_a_singular_fold_in_says_what_to_change() -> None:
    import torch

    from collabkit.models import build_model

    model = build_model(ModelConfig("dotbias", 4, 4, n_factors=8, y_range=(0.0, 5.5)))
    with pytest.raises(CollabkitError, match="with strength 0, 1 ratings cannot determine 9 unknowns"):
        model.fold_in(torch.tensor([1]), torch.tensor([5.0]), torch.zeros(10), 0.0)
