"""Weights, optimiser state and checkpoints of a Learner, as safetensors: no pickle.

`learn.save(name)` writes `path/model_dir/name.safetensors`; a checkpoint (`CheckpointCallback`)
adds the optimiser's moments, the schedule position (epoch and batch) and the random states (the
batch order's and torch's), so a resumed fit ends with the weights an uninterrupted one reaches.
Every file is written atomically: a kill leaves the previous one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from collabkit.errors import CollabkitError
from collabkit.train.callbacks import Callback
from collabkit.train.fused import FusedDotTrainer

if TYPE_CHECKING:
    from collabkit.train.learner import Learner

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class Resume:
    """Where a fit stopped inside an epoch: its schedule epoch, batches done, and the running loss."""

    epoch: int
    batch: int
    loss_sum: Tensor
    n_seen: int


def weights_file(learn: Learner, name: str | Path) -> Path:
    p = Path(name)
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p if p.is_absolute() else learn.path / learn.model_dir / p


def save_weights(learn: Learner, file: str | Path, with_opt: bool = False) -> Path:
    """See `Learner.save`."""
    from safetensors.torch import save_file

    from collabkit.atomic import write_with

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    if with_opt:
        if learn._opt is None:
            raise CollabkitError("with_opt=True, but this learner has not trained yet: no optimiser state")
        tensors |= {f"opt.{k}": v.detach().cpu().contiguous() for k, v in opt_state(learn._opt).items()}
    meta = {"format": "collabkit-weights"}
    return write_with(weights_file(learn, file), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_weights(learn: Learner, file: str | Path, with_opt: bool = False, strict: bool = True) -> None:
    """See `Learner.load`."""
    from safetensors.torch import load_file

    src = weights_file(learn, file)
    if not src.is_file():
        raise CollabkitError(f"{src}: no saved weights here (learn.save({str(file)!r}) writes them)")
    try:
        tensors = load_file(str(src))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CollabkitError(f"{src}: damaged weights file ({str(e)[:80]})") from e
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        learn.model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CollabkitError(f"{src}: the weights do not fit this model ({str(e)[:160]})") from None
    learn.model.to(learn.device)
    if with_opt:
        opt = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}
        if not opt:
            raise CollabkitError(f"{src}: holds no optimiser state (save it with with_opt=True)")
        if learn._opt is not None and fused_state(opt) != isinstance(learn._opt, FusedDotTrainer):
            raise CollabkitError(f"{src}: optimiser state of another kind of training step")
        learn._opt_state = opt


def state(learn: Learner) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything a resumed fit needs: tensors (weights, optimiser, random states) and numbers."""
    where = learn._interrupted
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    if learn._opt is not None:
        tensors |= {f"opt.{k}": v.detach().cpu().contiguous() for k, v in opt_state(learn._opt).items()}
    gen = learn._gen_state if where is not None and learn._gen_state is not None else None
    tensors["rng.loader"] = (gen if gen is not None else learn.dls.train.generator.get_state()).clone()
    tensors["rng.torch"] = torch.get_rng_state()
    if where is not None:
        tensors["resume.loss_sum"] = where.loss_sum.reshape(1).float()
    meta = {
        "epoch": len(learn.history),  # epochs completed
        "epoch_in_fit": where.epoch if where is not None else learn.epoch_in_fit + 1,
        "batch": where.batch if where is not None else 0,
        "n_seen": where.n_seen if where is not None else 0,
        "history": learn.history,
    }
    return tensors, meta


def restore(learn: Learner, folder: str | Path) -> int:
    """Load the checkpoint in `folder` into `learn`; returns the epoch of the schedule to start from."""
    tensors, meta = read_checkpoint(folder)
    learn.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    learn.model.to(learn.device)
    learn._opt_state = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")} or None
    learn.dls.train.generator.set_state(tensors["rng.loader"])
    torch.set_rng_state(tensors["rng.torch"])
    learn.epoch = int(meta["epoch"])
    learn.history = [dict(r) for r in meta.get("history", [])]
    batch = int(meta.get("batch", 0))
    if batch:
        loss_sum = tensors["resume.loss_sum"][0].double()
        learn._resume = Resume(int(meta["epoch_in_fit"]), batch, loss_sum, int(meta["n_seen"]))
    return int(meta["epoch_in_fit"])


def opt_state(opt: Any) -> dict[str, Tensor]:
    """The optimiser's moments and step counts as named tensors."""
    if isinstance(opt, FusedDotTrainer):
        return {"fused.m": opt.m, "fused.v": opt.v, "fused.steps": opt.steps.reshape(1)}
    out = {}
    for gi, g in enumerate(opt.param_groups):
        for pi in range(len(g["params"])):
            out[f"{gi}.{pi}.exp_avg"] = g["exp_avg"][pi]
            out[f"{gi}.{pi}.exp_avg_sq"] = g["exp_avg_sq"][pi]
            out[f"{gi}.{pi}.step"] = g["step"][pi].reshape(1)
    return out


def fused_state(state: dict[str, Tensor]) -> bool:
    return "fused.m" in state


def load_opt_state(opt: Any, state: dict[str, Tensor]) -> None:
    """Put saved moments into a fresh optimiser of the same kind and shapes."""
    if isinstance(opt, FusedDotTrainer) != fused_state(state):
        raise CollabkitError(
            "the saved optimiser state is of another kind of training step (fused vs autograd)"
        )
    mine = opt_state(opt)
    if set(mine) != set(state) or any(mine[k].shape != state[k].shape for k in mine):
        raise CollabkitError("the saved optimiser state does not fit this model's parameters")
    with torch.no_grad():
        for k, v in state.items():
            mine[k].copy_(v.to(mine[k].device))


class CheckpointCallback(Callback):
    """Writes a checkpoint to `folder` every `every` epochs and when Ctrl-C stops the fit.

    A checkpoint holds the weights, the optimiser's state, the schedule position (epoch and batch)
    and the random states (the batch order's and torch's), so `Learner.load_checkpoint(folder)`
    followed by the same `fit_one_cycle(..., start_epoch=...)` ends with the weights an
    uninterrupted run would have. It is written atomically: a kill leaves the previous one.
    """

    order = 30

    def __init__(self, folder: str | Path, every: int = 1, run: dict[str, Any] | None = None) -> None:
        if every < 1:
            raise CollabkitError(f"checkpoint every must be at least 1 epoch, got {every}")
        self.folder, self.every, self.run = Path(folder), int(every), dict(run or {})

    def after_epoch(self) -> None:
        done = self.learn.epoch_in_fit + 1
        if done % self.every == 0 or done == self.learn.n_epoch:
            self.write()

    def after_interrupt(self) -> None:
        self.write()

    def write(self) -> Path:
        from safetensors.torch import save_file

        from collabkit.atomic import write_atomic, write_with

        tensors, meta = state(self.learn)
        meta = {**meta, "n_epoch": self.learn.n_epoch}
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.run:
            write_atomic(
                self.folder / "run.json", json.dumps({"format": "collabkit-run", **self.run}, indent=1)
            )
        metadata = {"meta": json.dumps(meta, allow_nan=True)}
        return write_with(
            self.folder / CHECKPOINT, lambda tmp: save_file(tensors, str(tmp), metadata=metadata)
        )


def read_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, numbers) of the checkpoint in `folder`; a clear error when there is none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        raise CollabkitError(f"{path}: no checkpoint here (train with --checkpoint-every to write them)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["meta"])
        return load_file(str(path)), meta
    except Exception as e:  # safetensors and json raise their own types for damaged files
        raise CollabkitError(f"{path}: damaged checkpoint ({str(e)[:80]})") from e
