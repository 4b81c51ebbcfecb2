"""The one scorer of held-out rows: untrained pairs at the training mean, counted; the epoch table
and the run's last line give the same figure; evaluate.py is a leaf of plain metric functions."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from collabkit import CollabDataLoaders, CollabkitError, collab_learner, set_seed
from collabkit.evaluate import LevelAccuracy, rmse
from collabkit.scoring import evaluate_model, fallback_mask, score_pairs, training_facts

SRC = Path(__file__).resolve().parents[1] / "src" / "collabkit"


class Table(nn.Module):
    """rating = table[user, item]: a model whose every answer is written down."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table))

    def forward(self, x: Tensor) -> Tensor:
        return self.table[x[:, 0], x[:, 1]]


def test_untrained_pairs_get_the_training_mean_worked_on_paper() -> None:
    # users 1, 2 and items 1, 2 (index 0 is #na#); user 2 and item 2 have no training ratings
    model = Table([[0, 0, 0], [0, 4.0, 1.0], [0, 2.0, 5.0]])
    x = torch.tensor([[1, 1], [1, 2], [2, 1], [2, 2]])
    y = torch.tensor([3.0, 3.0, 3.0, 3.0])
    users, items = torch.tensor([0, 5, 0]), torch.tensor([0, 5, 0])
    res = score_pairs(model, x, y, users, items, train_mean=3.5)
    # predictions: 4 (trained), then the mean 3.5 three times; errors 1, .5, .5, .5
    assert res["n"] == 4 and res["fallback"] == 3
    assert res["mse"] == pytest.approx((1 + 3 * 0.25) / 4)
    assert res["mae"] == pytest.approx(2.5 / 4)
    assert res["rmse"] == pytest.approx(res["mse"] ** 0.5)
    # a bool mask means the same as counts
    same = score_pairs(model, x, y, users > 0, items > 0, train_mean=3.5)
    assert same == res


def test_fallback_mask_counts_na_and_indices_past_the_counts() -> None:
    x = torch.tensor([[1, 1], [0, 1], [1, 0], [7, 1], [2, 1]])
    mask = fallback_mask(x, torch.tensor([0, 2, 1]), torch.tensor([0, 3]))
    assert mask.tolist() == [False, True, True, True, False]


def test_loss_and_metrics_see_the_mean_on_untrained_rows() -> None:
    model = Table([[0, 0], [0, 4.0], [0, 1.0]])
    x, y = torch.tensor([[1, 1], [2, 1]]), torch.tensor([4.0, 3.0])
    res = score_pairs(
        model, x, y, torch.tensor([0, 1, 0]), torch.tensor([0, 1]), 2.0,
        loss_func=nn.functional.mse_loss, metrics=[rmse],
    )  # fmt: skip
    assert res["loss"] == pytest.approx(res["mse"]) == pytest.approx(0.5)  # (0 + 1) / 2
    assert res["fallback"] == 1


def test_training_facts_from_training_rows() -> None:
    facts = training_facts(torch.tensor([[1, 2], [1, 1], [3, 2]]), torch.tensor([4.0, 2.0, 3.0]), 5, 4)
    assert facts.user_counts.tolist() == [0, 2, 0, 1, 0]
    assert facts.item_counts.tolist() == [0, 1, 2, 0]
    assert facts.mean == pytest.approx(3.0)


def test_chunks_do_not_change_the_figures(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    facts = training_facts(dls.train.x, dls.train.y, dls.n_users, dls.n_items)
    args = (learn.model, dls.valid.x, dls.valid.y, facts.user_counts, facts.item_counts, facts.mean)
    whole, chunked = score_pairs(*args), score_pairs(*args, bs=7)
    assert whole["rmse"] == pytest.approx(chunked["rmse"], rel=1e-6)  # float32 sums in another order


def test_a_classifier_s_accuracy_is_on_the_trained_pairs(ratings: pd.DataFrame) -> None:
    set_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0)
    learn = collab_learner(dls, model="classifier", log=None)
    x, y = dls.valid.x[:50], dls.valid.y[:50]
    users = torch.ones(dls.n_users, dtype=torch.long)
    users[x[:10, 0]] = 0  # the first rows' users untrained
    cold = fallback_mask(x, users, torch.ones(dls.n_items, dtype=torch.long))
    assert 0 < int(cold.sum()) < 50
    res = score_pairs(learn.model, x, y, users, torch.ones(dls.n_items, dtype=torch.long), 3.0)
    acc = LevelAccuracy(learn.model.levels.tolist())
    with torch.inference_mode():
        assert res["accuracy"] == pytest.approx(acc(learn.model.eval()(x[~cold]), y[~cold]))
    assert res["fallback"] == int(cold.sum())


def test_a_ranking_model_has_no_rating_error(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0)
    learn = collab_learner(dls, model="ease", log=None)
    counts = torch.ones(dls.n_users, dtype=torch.long)
    with pytest.raises(CollabkitError, match="'ease' ranks items; it predicts no ratings"):
        score_pairs(learn.model, dls.valid.x, dls.valid.y, counts, counts, 3.0)


def test_evaluate_model_scores_every_pair_with_the_model(ratings: pd.DataFrame) -> None:
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), log=None)
    res = evaluate_model(learn.model, dls.valid.x, dls.valid.y)
    with torch.inference_mode():
        direct = rmse(learn.model.eval()(dls.valid.x), dls.valid.y)
    assert res["rmse"] == pytest.approx(direct) and res["n"] == dls.valid.n and "fallback" not in res


# -- one run, one answer ---------------------------------------------------------------------------
def _cold_start_table(ratings: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every row of users 1..6 held out, so those users have no training ratings at all."""
    cold = ratings["user"].isin(range(1, 7)).to_numpy()
    rng = np.random.default_rng(0)
    extra = rng.random(len(ratings)) < 0.15
    valid = np.flatnonzero(cold | extra)
    train = np.flatnonzero(~(cold | extra))
    return ratings, train, valid


def test_the_epoch_table_gives_the_scorer_s_figure_for_the_final_weights(ratings: pd.DataFrame) -> None:
    table, train, valid = _cold_start_table(ratings)
    dls = CollabDataLoaders.from_df(table, bs=64, seed=0, train_rows=train, valid_rows=valid)
    lines: list[str] = []
    set_seed(0)
    learn = collab_learner(dls, n_factors=8, y_range=(0, 5.5), log=lines.append, show_progress=False)
    learn.fit_one_cycle(3, 1e-2, wd=0.1)
    facts = training_facts(dls.train.x, dls.train.y, dls.n_users, dls.n_items)
    res = score_pairs(
        learn.model, dls.valid.x, dls.valid.y, facts.user_counts, facts.item_counts, facts.mean,
        biases=facts.biases,
    )  # fmt: skip
    n_cold = int(table.iloc[valid]["user"].isin(range(1, 7)).sum())
    assert res["fallback"] >= n_cold > 0
    last = learn.history[-1]
    assert last["rmse"] == pytest.approx(res["rmse"], rel=1e-6)
    assert last["valid_loss"] == pytest.approx(res["mse"], rel=1e-5)  # MSE loss: the same rows
    assert learn.valid_scores["fallback"] == res["fallback"]
    # the untrained users' random embeddings would give another figure
    with torch.inference_mode():
        raw = rmse(learn.model.eval()(dls.valid.x), dls.valid.y)
    assert abs(raw - res["rmse"]) > 1e-4
    notes = [line for line in lines if "scored by the biases-only baseline" in line]
    assert len(notes) == 1 and f"{res['fallback']:,} of {len(valid):,} held-out rows" in notes[0]


def test_a_run_reports_one_held_out_figure(ratings: pd.DataFrame) -> None:
    """The epoch table's last rmse is the run's final figure (workflows.score_rows) too."""
    from collabkit.data.splits import SplitSpec
    from collabkit.workflows import TrainConfig, train

    table = ratings.copy()
    table.loc[table["user"] <= 6, "timestamp"] = table["timestamp"].max() + 1  # users 1..6 held out
    config = TrainConfig(model="dotbias", recipe="chapter", epochs=3, split=SplitSpec("time", valid_pct=0.2))
    result = train(table, config, log=None)
    assert result.valid["fallback"] > 0
    assert result.history[-1]["rmse"] == pytest.approx(result.valid["rmse"], rel=1e-6)


# -- evaluate.py is a leaf -------------------------------------------------------------------------
def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.append((node.module or "", id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
    return found


def test_evaluate_is_a_leaf_of_metric_functions() -> None:
    imports = _imports(SRC / "evaluate.py")
    assert not [m for m, _ in imports if m.startswith("collabkit.models")]
    assert not [m for m, top in imports if top and m.startswith("collabkit")]


def test_an_untrained_user_is_predicted_by_the_known_items_bias(ratings: pd.DataFrame) -> None:
    """A held-out pair whose user has no training ratings gets the biases-only answer (the mean plus
    the item's damped bias), not the bare mean: rows the model cannot know are scored as the
    baseline scores them, so "beats biases-only" compares like with like."""
    table, train, valid = _cold_start_table(ratings)
    dls = CollabDataLoaders.from_df(table, bs=64, seed=0, train_rows=train, valid_rows=valid)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), show_progress=False)
    facts = training_facts(dls.train.x, dls.train.y, dls.n_users, dls.n_items)
    cold = ~(facts.user_counts[dls.valid.x[:, 0]] > 0)
    x, y = dls.valid.x[cold], dls.valid.y[cold]
    assert facts.biases is not None
    want = facts.biases.predict(x[:, 0].numpy(), x[:, 1].numpy())
    assert np.ptp(want) > 0.1  # the items' biases differ: not the mean everywhere
    args = (learn.model, x, y, facts.user_counts, facts.item_counts, facts.mean)
    res = score_pairs(*args, biases=facts.biases)
    assert res["fallback"] == len(y)
    assert res["mse"] == pytest.approx(float(np.mean((want - y.numpy().astype(np.float64)) ** 2)), rel=1e-5)
    at_mean = score_pairs(*args)
    assert at_mean["mse"] == pytest.approx(float(((y - facts.mean) ** 2).mean()), rel=1e-5)
