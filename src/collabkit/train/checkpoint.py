"""Weights, optimiser state and checkpoints of a Learner, as safetensors: no pickle.

`learn.save(name)` writes `path/model_dir/name.safetensors`; a checkpoint (`CheckpointCallback`)
is the Learner's whole `TrainState` (weights, optimiser moments, schedule position, random states),
so a resumed fit ends with the weights an uninterrupted one reaches. This file talks to the Learner
only through its public methods (`opt_state`, `load_opt_state`, `train_state`, `load_train_state`);
the run folder's layout is in `collabkit.train.run_folder`. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from collabkit.atomic import write_with
from collabkit.errors import CollabkitError
from collabkit.train.callbacks import Callback
from collabkit.train.run_folder import CHECKPOINT_FILE, read_checkpoint, write_checkpoint

if TYPE_CHECKING:
    from collabkit.train.learner import Learner

CHECKPOINT = CHECKPOINT_FILE
WEIGHTS_FORMAT = "collabkit-weights"


def weights_file(learn: Learner, name: str | Path) -> Path:
    """`name` as a .safetensors path, under `learn.path / learn.model_dir` unless absolute."""
    p = Path(name)
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p if p.is_absolute() else learn.path / learn.model_dir / p


def save_weights(learn: Learner, file: str | Path, with_opt: bool = False) -> Path:
    """See `Learner.save`."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    if with_opt:
        opt = learn.opt_state()
        if opt is None:
            raise CollabkitError("with_opt=True, but this learner has not trained yet: no optimiser state")
        tensors |= {f"opt.{k}": v for k, v in opt.items()}
    meta = {"format": WEIGHTS_FORMAT}
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
        try:
            learn.load_opt_state(opt)
        except CollabkitError as e:
            raise CollabkitError(f"{src}: {e}") from None


def restore(learn: Learner, folder: str | Path) -> int:
    """Load the checkpoint in `folder` into `learn`; returns the epoch of the schedule to start from."""
    state, _ = read_checkpoint(folder)
    return learn.load_train_state(state)


class CheckpointCallback(Callback):
    """Writes a checkpoint to `folder` every `every` epochs (but not after the last) and when
    Ctrl-C stops the fit.

    A checkpoint holds the Learner's `TrainState`, so `Learner.load_checkpoint(folder)` followed by
    the same `fit_one_cycle(..., start_epoch=...)` ends with the weights an uninterrupted run would
    have. `run` is the run record (`run_folder.run_record`) a resumed command needs to load the same
    data; it goes into the checkpoint and beside it as run.json (see `collabkit.train.run_folder`).
    """

    order = 30

    def __init__(self, folder: str | Path, every: int = 1, run: dict[str, Any] | None = None) -> None:
        if isinstance(every, bool) or every < 1:
            raise CollabkitError(f"checkpoint every must be at least 1 epoch, got {every}")
        self.folder, self.every, self.run = Path(folder), int(every), dict(run or {})

    def after_epoch(self) -> None:
        # none after the schedule's last epoch: the fit is over then, and a checkpoint of a finished
        # schedule is one a resume could not continue (killed while saving its model, a run resumes
        # from the one before and redoes the last epochs, ending with the same weights)
        done = self.learn.epoch_in_fit + 1
        if done % self.every == 0 and done < self.learn.n_epoch:
            self.write()

    def after_interrupt(self) -> None:
        self.write()

    def write(self) -> Path:
        """Write the checkpoint now; returns its path."""
        return write_checkpoint(self.folder, self.learn.train_state(), self.run or None)
