"""The rating blend (`blend`): weights fitted on held-aside training rows only, then every member
retrained on all of them; the blended rating is what its weights say, through every scoring path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.errors import CollabkitError
from collabkit.models import CollabModel, ModelConfig, build_model
from collabkit.models.stacking import Blend
from collabkit.workflows import TrainConfig, train
from tests.conftest import make_ratings

N_USERS, N_ITEMS, K = 40, 30, 2


def planted() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Every pair of a rank-2 matrix with biases and an offset of 3; (pairs, ratings, the truth's tables)."""
    g = torch.Generator().manual_seed(0)
    truth = {
        "u_weight.weight": torch.randn(N_USERS, K, generator=g),
        "i_weight.weight": torch.randn(N_ITEMS, K, generator=g),
        "u_bias.weight": 0.5 * torch.randn(N_USERS, 1, generator=g),
        "i_bias.weight": 0.5 * torch.randn(N_ITEMS, 1, generator=g),
    }
    pairs = torch.cartesian_prod(torch.arange(N_USERS), torch.arange(N_ITEMS))
    u, i = pairs[:, 0], pairs[:, 1]
    y = 3 + truth["u_bias.weight"][u, 0] + truth["i_bias.weight"][i, 0]
    y = y + (truth["u_weight.weight"][u] * truth["i_weight.weight"][i]).sum(1)
    return pairs, y + 0.05 * torch.randn(len(y), generator=g), truth


def blend_of(members: str = "dotbias,dot", **settings: object) -> Blend:
    each = [{"n_factors": K} for _ in members.split(",")]
    model = build_model(
        ModelConfig("blend", N_USERS, N_ITEMS, members=members, member_settings=each, **settings)
    )
    assert isinstance(model, Blend)
    return model


def test_weights_come_from_rows_no_member_trained_on_then_members_see_every_row() -> None:
    pairs, y, truth = planted()
    seen: list[tuple[str, torch.Tensor]] = []

    def trainer(config: ModelConfig, x: torch.Tensor, _y: torch.Tensor) -> CollabModel:
        """dotbias: the truth less its offset; dot: noise. Records the rows each was given."""
        seen.append((config.family, x))
        member = build_model(config)
        with torch.no_grad():
            for name, p in member.named_parameters():
                p.copy_(truth[name] if config.family == "dotbias" else torch.randn_like(p))
        return member

    model = blend_of()
    measured = model.fit_members(pairs, y, trainer, seed=1)
    first = [x for _, x in seen[:2]]
    assert [f for f, _ in seen] == ["dotbias", "dot", "dotbias", "dot"]
    assert len(first[0]) == len(pairs) - measured["held_aside"] and measured["held_aside"] == len(pairs) // 10
    held = set(map(tuple, pairs.tolist())) - set(map(tuple, first[0].tolist()))
    assert len(held) == measured["held_aside"]  # the weights' rows: none of them trained on
    assert all(torch.equal(x, pairs) for _, x in seen[2:])  # then every member on every row
    intercept, w_truth, w_noise = model.weights.tolist()
    assert w_truth == pytest.approx(1.0, abs=0.05) and abs(w_noise) < 0.05
    assert intercept == pytest.approx(3.0, abs=0.1)
    assert measured["blend_rmse"] < 0.1 < measured["member_rmse"]["dot"]


def test_a_blended_rating_is_its_weighted_sum_by_every_path() -> None:
    pairs, y, _ = planted()

    def trainer(config: ModelConfig, x: torch.Tensor, _y: torch.Tensor) -> CollabModel:
        torch.manual_seed(len(x) + len(config.family))
        return build_model(config)  # random members: the blend's arithmetic is what is checked

    model = blend_of()
    model.fit_members(pairs, y, trainer)
    with torch.no_grad():
        model.weights.copy_(torch.tensor([2.5, 0.7, -0.4]))
        parts = [m(pairs) for m in model._members()]
        expected = (2.5 + 0.7 * parts[0] - 0.4 * parts[1]).clamp(float(y.min()), float(y.max()))
        assert torch.allclose(model(pairs), expected, atol=1e-5)
        block = model.score_block(
            model.user_rows(torch.arange(N_USERS)), model.item_side(torch.arange(N_ITEMS))
        )
        assert torch.allclose(model.raw_to_rating(block).flatten(), expected, atol=1e-4)


def test_trained_through_the_workflow_it_reports_its_held_aside_rows() -> None:
    table = make_ratings(n_users=50, n_items=30, n=1200, seed=2)
    lines: list[str] = []
    res = train(table, TrainConfig(model="blend", settings={"members": "dotbias,nn"}), log=lines.append)
    assert any("blend weights fitted on 96 held-aside training rows" in s for s in lines), lines
    alone = [train(table, TrainConfig(model=m), log=None).valid["rmse"] for m in ("dotbias", "nn")]
    assert res.valid["rmse"] < max(alone)  # better than its worse member: the weights did something
    assert res.settings["members"] == ["dotbias", "nn"]


@pytest.mark.parametrize(
    "members, says",
    [
        ("dotbias", "at least 2 items"),
        ("dotbias,ease", "ranks items"),
        ("dotbias,dotbias", "named twice"),
        ("dotbias,nosuch", "not a family to blend"),
        ("dotbias,blend", "not a family to blend"),
    ],
)
def test_bad_members_are_one_line(members: str, says: str, tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    make_ratings(n=300).to_csv(csv, index=False)
    out = str(tmp_path / "m")
    args = ["train", "--data", str(csv), "--model", "blend", "-o", f"members={members}", "--out", out]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert says in line and "Traceback" not in result.output


def test_too_few_rows_to_hold_any_aside() -> None:
    pairs, y, _ = planted()
    with pytest.raises(CollabkitError, match="too few"):
        blend_of().fit_members(pairs[:10], y[:10], lambda c, x, y: build_model(c))
