"""A Learner's training state as one object: what a checkpoint saves and a resume restores.

The Learner makes it (`learn.train_state()`) and takes it back (`learn.load_train_state(state)`);
checkpoints and run folders only move it to and from disk, so no other file reads the Learner's
private fields. `state_dict()` splits it into named tensors and JSON numbers, the two halves of a
safetensors file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.train.fused import FusedDotTrainer

Schedule = Literal["one_cycle", "constant"]


@dataclass(frozen=True)
class FitSettings:
    """The settings a fit ran with: shown by `summary()` and saved with a checkpoint."""

    schedule: Schedule
    lr: float  # the constant rate, or one-cycle's peak
    wd: float
    n_epoch: int

    def describe(self) -> str:
        rate = f"lr {self.lr:g}" + (" (one-cycle peak)" if self.schedule == "one_cycle" else "")
        return f"weight decay {self.wd:g}, {rate}, {self.n_epoch} epoch{'s' if self.n_epoch != 1 else ''}"


@dataclass
class Position:
    """Where a fit stands in its schedule: the epoch to run next and how far into it.

    `batch` > 0 means that epoch was stopped part-way (Ctrl-C): the resumed fit redraws its batch
    order from the saved generator state, skips the `batch` batches done, and carries their loss.
    """

    epoch_in_fit: int  # the schedule's epoch to run next (0-based)
    batch: int = 0  # batches of that epoch already done
    loss_sum: float = 0.0  # their summed training loss
    n_seen: int = 0  # their rows


@dataclass
class TrainState:
    """Everything a resumed fit needs to end with the weights an uninterrupted one reaches."""

    model: dict[str, Tensor]  # the weights, on the CPU
    opt: dict[str, Tensor] | None  # the optimiser's moments and step counts (None: no fit yet)
    rng_loader: Tensor  # the batch order's generator, as it was when the next epoch to run began
    rng_torch: Tensor  # torch's global generator
    position: Position
    epochs_done: int = 0  # epochs completed over the learner's life (its history's length)
    n_epoch: int = 0  # epochs in the schedule of the fit that wrote it
    history: list[dict[str, float]] = field(default_factory=list)
    fit: FitSettings | None = None

    def state_dict(self) -> dict[str, Any]:
        """{"tensors": name -> CPU tensor, "meta": JSON-ready numbers}."""
        tensors = {f"model.{k}": _cpu(v) for k, v in self.model.items()}
        tensors |= {f"opt.{k}": _cpu(v) for k, v in (self.opt or {}).items()}
        tensors["rng.loader"] = _cpu(self.rng_loader)
        tensors["rng.torch"] = _cpu(self.rng_torch)
        p = self.position
        meta = {
            "epoch": self.epochs_done,
            "epoch_in_fit": p.epoch_in_fit,
            "batch": p.batch,
            "n_seen": p.n_seen,
            "loss_sum": p.loss_sum,
            "n_epoch": self.n_epoch,
            "history": [dict(r) for r in self.history],
            "fit": None if self.fit is None else asdict(self.fit),
        }
        return {"tensors": tensors, "meta": meta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Fill this object from what `state_dict()` returned (or a checkpoint file held)."""
        tensors, meta = state["tensors"], state["meta"]
        try:
            self.model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            self.opt = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")} or None
            self.rng_loader, self.rng_torch = tensors["rng.loader"], tensors["rng.torch"]
            loss_sum = meta.get("loss_sum")
            if loss_sum is None and "resume.loss_sum" in tensors:  # an older checkpoint kept it as a tensor
                loss_sum = float(tensors["resume.loss_sum"].reshape(-1)[0])
            self.position = Position(
                int(meta["epoch_in_fit"]), int(meta.get("batch", 0)), float(loss_sum or 0.0),
                int(meta.get("n_seen", 0)),
            )  # fmt: skip
            self.epochs_done = int(meta["epoch"])
            self.n_epoch = int(meta.get("n_epoch", 0))
            self.history = [dict(r) for r in meta.get("history", [])]
            self.fit = FitSettings(**meta["fit"]) if meta.get("fit") else None
        except (KeyError, TypeError, ValueError) as e:
            raise CollabkitError(f"a damaged training state ({type(e).__name__}: {str(e)[:80]})") from None

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainState:
        """A TrainState from what `state_dict()` returned."""
        empty = torch.empty(0)
        new = cls({}, None, empty, empty, Position(0))
        new.load_state_dict(state)
        return new


def _cpu(t: Tensor) -> Tensor:
    return t.detach().cpu().contiguous().clone()


# -- optimiser state: the moments of either kind of training step, as named tensors ------------------
def optimizer_state(opt: Any) -> dict[str, Tensor]:
    """The optimiser's moments and step counts as named tensors (views: copy before keeping)."""
    if isinstance(opt, FusedDotTrainer):
        return {"fused.m": opt.m, "fused.v": opt.v, "fused.steps": opt.steps.reshape(1)}
    out = {}
    for gi, g in enumerate(opt.param_groups):
        for pi in range(len(g["params"])):
            out[f"{gi}.{pi}.exp_avg"] = g["exp_avg"][pi]
            out[f"{gi}.{pi}.exp_avg_sq"] = g["exp_avg_sq"][pi]
            out[f"{gi}.{pi}.step"] = g["step"][pi].reshape(1)
    return out


def is_fused_state(state: dict[str, Tensor]) -> bool:
    """Whether saved optimiser state is the fused dot step's (else the autograd AdamW's)."""
    return "fused.m" in state


def load_optimizer_state(opt: Any, state: dict[str, Tensor]) -> None:
    """Put saved moments into a fresh optimiser of the same kind and shapes."""
    if isinstance(opt, FusedDotTrainer) != is_fused_state(state):
        raise CollabkitError(
            "the saved optimiser state is of another kind of training step (fused vs autograd)"
        )
    mine = optimizer_state(opt)
    if set(mine) != set(state) or any(mine[k].shape != state[k].shape for k in mine):
        raise CollabkitError("the saved optimiser state does not fit this model's parameters")
    with torch.no_grad():
        for k, v in state.items():
            mine[k].copy_(v.to(mine[k].device))
