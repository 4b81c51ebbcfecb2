"""Training one member of a blend on given index tensors, as `collabkit train` would train it alone.

A blend (`collabkit.models.stacking`) lives in the models layer and cannot reach the Learner, so
the training workflow hands it this trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from collabkit.data.loaders import CollabDataLoaders, DataLoader
from collabkit.models.base import CollabModel, ModelConfig, build_model, family
from collabkit.models.settings import Recipe
from collabkit.models.stacking import MemberTrainer
from collabkit.train.callbacks import StopAfterEpochCallback
from collabkit.train.epoch_choice import INNER_VALID, choose_epochs, start_from_biases
from collabkit.train.learner import Learner, default_metrics


def member_trainer(dls: CollabDataLoaders, seed: int, device: str | torch.device = "cpu") -> MemberTrainer:
    """A trainer for blend members sharing `dls`'s vocabularies. A gradient family runs its default
    ("fast") recipe; where that recipe keeps the best epoch, the count is chosen on a seeded tenth of
    the pairs given, as `collabkit train` chooses it, and the member then trains on all of them to
    that count (0: its biases-only start). Any other family runs its `fit_direct`. Each member
    starts from the same seed, so a blend trains reproducibly."""

    def learner(
        config: ModelConfig, recipe: Recipe, x: Tensor, y: Tensor, watch: Tensor | None = None
    ) -> Learner:
        """A fresh seeded member on the pairs x, y; `watch` indexes the held-aside ones (else none)."""
        torch.manual_seed(seed)
        net = build_model(config)
        net.prepare(dls)  # a hybrid member's side columns, from the blend's table
        net = net.to(device)
        watch = torch.zeros(0, dtype=torch.long) if watch is None else watch
        fit = torch.ones(len(x), dtype=torch.bool).index_fill_(0, watch, False)
        loaders = CollabDataLoaders(
            DataLoader(x[fit], y[fit], bs=recipe.bs, shuffle=True, seed=seed),
            DataLoader(x[watch], y[watch], bs=recipe.bs),
            dls.classes, user_name=dls.user_name, item_name=dls.item_name, rating_name=dls.rating_name,
        )  # fmt: skip
        return Learner(
            loaders, net, loss_func=net.default_loss(), metrics=default_metrics(net), device=device,
            show_progress=False, log=None, config=config,
        )  # fmt: skip

    def train(config: ModelConfig, x: Tensor, y: Tensor) -> CollabModel:
        fam = family(config.family)
        if not fam.trains_by_gradient:
            torch.manual_seed(seed)
            net = build_model(config)
            net.prepare(dls)
            net = net.to(device)
            net.fit_direct(x.to(device), y.to(device))
            return net
        recipe = fam.recipes["fast"]
        epochs = recipe.epochs
        if recipe.keep_best and len(x) >= 20:
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            _, epochs = choose_epochs(
                learner(config, recipe, x, y, perm[: max(1, int(len(x) * INNER_VALID))]), recipe
            )
        learn = learner(config, recipe, x, y)
        member = learn.model
        assert isinstance(member, CollabModel)
        if epochs == 0:  # the biases-only start scored best
            start_from_biases(member, x, y, zero_factors=True)
            return member
        cbs = [StopAfterEpochCallback(epochs)] if epochs < recipe.epochs else []
        learn.fit_one_cycle(recipe.epochs, recipe.lr, wd=recipe.wd, cbs=cbs)
        return member

    return train
