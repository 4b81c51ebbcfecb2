"""A blend of rating models: several families trained on the same rows, their predictions combined
by weights fitted on ratings that none of them was trained on.

Training (`collabkit.workflows` drives it, since members may train by gradient steps):
1. a seeded tenth of the training rows (`held_out`) is set aside; every member trains on the rest;
2. the weights (one per member, plus an intercept) are the least-squares fit of the held-aside
   ratings on the members' predictions of them, with a small ridge pull towards an equal split;
3. every member trains again on all training rows, and the weights are kept.
The split's test rows are never read. A rating is w_0 + sum_m w_m rating_m, clipped into the
training ratings' range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from collabkit.errors import CollabkitError
from collabkit.models.base import CollabModel, ModelConfig, family, model_names, register
from collabkit.models.settings import FamilySettings, output_range
from collabkit.models.sparse import CSR

# How a member is trained: (its config, training pairs, ratings) -> the fitted member. The library
# layer supplies it (the Learner's one-cycle run for a gradient family, `fit_direct` for the rest).
MemberTrainer = Callable[[ModelConfig, Tensor, Tensor], CollabModel]
RIDGE = (
    1e-3  # pull of the weights towards an equal split, per held-aside rating: keeps collinear members finite
)


class BlendSettings(FamilySettings):
    members: list[str] = Field(
        ["bayesmf", "dotbias", "nn"], min_length=2, description="rating families to blend (comma-separated)"
    )
    held_out: float = Field(
        0.1, gt=0.0, lt=0.5, description="share of the training rows that fits the weights"
    )
    member_settings: list[dict[str, Any]] | None = Field(
        None, description="each member's settings, completed from the data when training starts"
    )

    @field_validator("members", mode="before")
    @classmethod
    def _split_names(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @field_validator("members")
    @classmethod
    def _rating_families(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in model_names() or name == "blend":
                raise ValueError(
                    f"{name!r} is not a family to blend; rating families: {', '.join(rating_families())}"
                )
            if family(name).score_kind != "rating":
                raise ValueError(f"{name!r} ranks items, it predicts no ratings to blend")
        if len(set(v)) != len(v):
            raise ValueError(f"a member is named twice in {v}")
        return v

    @model_validator(mode="after")
    def _one_settings_per_member(self) -> BlendSettings:
        if self.member_settings is not None and len(self.member_settings) != len(self.members):
            raise ValueError(f"{len(self.member_settings)} member settings for {len(self.members)} members")
        return self


def rating_families() -> list[str]:
    return [n for n in model_names() if n != "blend" and family(n).score_kind == "rating"]


@register("blend")
class Blend(CollabModel):
    """Rating families blended by weights fitted on held-aside training rows (`-o members=...`)."""

    trains_by_gradient = False
    trains_members: ClassVar[bool] = True  # `fit_members` needs the library's trainer, not `fit_direct`
    has_biases = False
    can_explain = False

    weights: Tensor  # (n_members + 1,) intercept, then one per member
    bounds: Tensor  # (2,) the training ratings' range: blended ratings are clipped into it

    settings: BlendSettings
    Settings = BlendSettings

    def __init__(self, config: ModelConfig) -> None:
        self.settings = config.settings  # type: ignore[assignment]  # checked by ModelConfig
        s = self.settings
        member_settings = s.member_settings or [{} for _ in s.members]
        self.member_configs = [
            ModelConfig(name, config.n_users, config.n_items, **values)
            for name, values in zip(s.members, member_settings, strict=True)
        ]
        self.members = nn.ModuleList(family(c.family).from_config(c) for c in self.member_configs)
        equal = torch.full((len(s.members) + 1,), 1.0 / len(s.members))
        equal[0] = 0.0
        self.register_buffer("weights", equal)
        self.register_buffer("bounds", torch.tensor([-float("inf"), float("inf")]))

    @classmethod
    def from_config(cls, config: ModelConfig) -> Blend:
        return cls(config)

    @classmethod
    def settings_from_data(cls, settings: dict[str, Any], dls: Any) -> dict[str, Any]:
        """Every member's settings completed as the member's own family completes them, with the
        output range that the command gives a single model (so each member trains as it would alone)."""
        checked = BlendSettings(**{k: v for k, v in settings.items() if k != "member_settings"})
        given = settings.get("member_settings") or [{} for _ in checked.members]
        completed = []
        for name, values in zip(checked.members, given, strict=False):
            fam = family(name)
            values = dict(values)
            if "y_range" in fam.Settings.model_fields and values.get("y_range") is None:
                values["y_range"] = output_range(*dls.rating_range())
            completed.append(fam.settings_from_data(values, dls))
        return {**settings, "members": checked.members, "member_settings": completed}

    @classmethod
    def reads_side_columns(cls, settings: dict[str, Any]) -> bool:
        """A member that reads side columns (a hybrid) needs them."""
        try:
            members = BlendSettings(**{k: v for k, v in settings.items() if k == "members"}).members
        except ValueError:  # bad members: refused in one line when the settings are checked
            return False
        return any(family(m).reads_side_columns({}) for m in members)

    @classmethod
    def describe_config(cls, config: ModelConfig) -> dict[str, Any]:
        s = config.settings
        assert isinstance(s, BlendSettings)
        return {"members": ",".join(s.members), "held_out": s.held_out}

    @property
    def takes_days(self) -> bool:
        """Whether pairs may carry the rating's day: a member with day effects reads it."""
        return any(getattr(m, "takes_days", False) for m in self._members())

    @staticmethod
    def _for(member: nn.Module, x: Tensor) -> Tensor:
        """`x` as `member` takes it: the day column only for a member with day effects."""
        return x if getattr(member, "takes_days", False) else x[:, :2]

    # -- training --------------------------------------------------------------------------------
    def fit_direct(self, x: Tensor, y: Tensor) -> None:
        raise CollabkitError(
            "blend: its members may train by gradient steps; train it with collabkit.workflows.train "
            "(or `collabkit train --model blend`), which calls fit_members"
        )

    def fit_members(self, x: Tensor, y: Tensor, train_member: MemberTrainer, seed: int = 0) -> dict[str, Any]:
        """Fit the weights on held-aside training rows, then every member on all of `x`, `y`.

        Returns what was measured on the held-aside rows: each member's RMSE and the blend's.
        """
        if len(x) < 20:
            raise CollabkitError(
                f"blend: {len(x)} training ratings are too few to hold some aside for the weights"
            )
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(x), generator=g)
        cut = max(1, int(len(x) * self.settings.held_out))
        held, fit = perm[:cut], perm[cut:]
        preds = []
        for slot, config in zip(self._members(), self.member_configs, strict=True):
            member = train_member(config, self._for(slot, x[fit]), y[fit])
            with torch.no_grad():
                pairs = self._for(member, x[held]).to(_device(member))
                preds.append(member.output_to_rating(member(pairs)).float().cpu())
        design = torch.stack([torch.ones(len(held)), *preds], 1).double()  # (held, 1 + members)
        target = y[held].double().cpu()
        equal = self.weights.double().cpu()
        pull = RIDGE * len(held) * torch.eye(design.shape[1], dtype=torch.float64)
        pull[0, 0] = 0.0  # the intercept is free
        w = torch.linalg.solve(design.T @ design + pull, design.T @ target + pull @ equal)
        measured = {
            "held_aside": len(held),
            "member_rmse": {
                c.family: float((p.double() - target).square().mean().sqrt())
                for c, p in zip(self.member_configs, preds, strict=True)
            },
            "blend_rmse": float((design @ w - target).square().mean().sqrt()),
            "weights": {
                "intercept": float(w[0]),
                **{c.family: float(v) for c, v in zip(self.member_configs, w[1:], strict=True)},
            },
        }
        for i, config in enumerate(self.member_configs):
            fitted = train_member(config, self._for(self.members[i], x), y)
            self.members[i].load_state_dict(fitted.state_dict())
        self.weights.copy_(w.float())
        self.bounds.copy_(torch.stack([y.min(), y.max()]).float())
        return measured

    def attach_training(self, x: Tensor, y: Tensor) -> None:
        for member in self._members():
            member.attach_training(x[:, :2], y)

    # -- scoring ---------------------------------------------------------------------------------
    def _members(self) -> list[CollabModel]:
        return [m for m in self.members if isinstance(m, CollabModel)]

    def forward(self, x: Tensor) -> Tensor:
        out = self.weights[0] + sum(
            w * m.output_to_rating(m(self._for(m, x)))
            for w, m in zip(self.weights[1:], self._members(), strict=True)
        )
        return self.raw_to_rating(torch.as_tensor(out))

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return torch.cat([m.user_rows(user_idx).float() for m in self._members()], dim=1)

    def item_side(self, item_idx: Tensor) -> list[Any]:
        return [m.item_side(item_idx) for m in self._members()]

    def _row_slices(self, device: torch.device) -> list[slice]:
        """Where each member's part of a blended user row lies (`user_rows` puts them side by side)."""
        widths = [
            m.user_rows(torch.zeros(1, dtype=torch.long, device=device)).shape[1] for m in self._members()
        ]
        ends = torch.tensor(widths).cumsum(0).tolist()
        return [slice(end - width, end) for end, width in zip(ends, widths, strict=True)]

    def score_block(self, rows: Tensor, side: list[Any]) -> Tensor:
        total: Tensor | None = None
        parts = zip(self.weights[1:], self._members(), side, self._row_slices(rows.device), strict=True)
        for w, m, s, cols in parts:
            part = w * m.raw_to_rating(m.score_block(rows[:, cols], s))
            total = part if total is None else total + part
        assert total is not None
        return total + self.weights[0]

    def raw_to_rating(self, raw: Tensor) -> Tensor:
        return raw.clamp(float(self.bounds[0]), float(self.bounds[1]))

    def pair_width(self) -> int:
        return sum(m.pair_width() for m in self._members())

    def _first_with(self, what: str) -> CollabModel:
        for m in self._members():
            if getattr(m.capabilities(), what):
                return m
        raise CollabkitError(
            f"blend: no member of {', '.join(self.settings.members)} has {what.replace('_', ' ')}"
        )

    def item_vectors(self) -> Tensor | CSR:
        """The first member's item vectors that has them (similar items, the map): a blend has no
        vector space of its own."""
        return self._first_with("item_vectors").item_vectors()

    def user_vectors(self) -> Tensor | CSR:
        return self._first_with("user_vectors").user_vectors()

    def fold_in(self, item_idx: Tensor, ratings: Tensor, prior: Tensor, strength: float) -> Tensor:
        """Every member folds the new user in with its own solve and its own default strength
        (scaled by `strength` / the blend's default); their rows side by side."""
        out = []
        for m, cols in zip(self._members(), self._row_slices(prior.device), strict=True):
            own = strength * m.default_fold_in_strength / self.default_fold_in_strength
            out.append(m.fold_in(item_idx, ratings, prior[cols], own).float())
        return torch.cat(out)


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
