"""Callbacks with fastai's names: hooks into the training loop, and the ones a chapter reader uses.

A callback subclasses `Callback` and defines any of `before_fit`, `before_epoch`, `after_batch`,
`after_epoch`, `after_fit`; `self.learn` is the Learner. Raising `CancelFitException` in any of them
ends the fit cleanly (after_fit still runs). `after_batch` is called only when some callback defines
it, so the fused step of the dot models keeps its speed when callbacks act at epoch ends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collabkit.atomic import write_atomic
from collabkit.errors import CollabkitError

if TYPE_CHECKING:
    from collabkit.train.learner import Learner

EVENTS = ("before_fit", "before_epoch", "after_batch", "after_epoch", "after_fit", "after_interrupt")


class CancelFitException(Exception):
    """Raised by a callback to stop the fit after the current event (fastai's name)."""


class Callback:
    """Base class: override the events you need; `learn` is set when the callback is attached."""

    learn: Learner
    order: int = 0  # lower runs first

    def before_fit(self) -> None: ...
    def before_epoch(self) -> None: ...
    def after_batch(self) -> None: ...
    def after_epoch(self) -> None: ...
    def after_fit(self) -> None: ...
    def after_interrupt(self) -> None:
        """collabkit's own event: Ctrl-C stopped the fit (weights synced; KeyboardInterrupt follows)."""

    @classmethod
    def wants(cls, event: str) -> bool:
        """Whether this class defines `event` itself (the base's are no-ops)."""
        return getattr(cls, event) is not getattr(Callback, event)

    def __repr__(self) -> str:
        return type(self).__name__


class TrackerCallback(Callback):
    """Watches a value of the epoch table (`monitor`) and knows whether it improved."""

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0) -> None:
        self.monitor, self.min_delta = monitor, float(min_delta)
        lower = comp is None and (
            "loss" in monitor or "error" in monitor or monitor in ("rmse", "mse", "mae")
        )
        self.lower_is_better = lower if comp is None else comp is min or comp is __import__("numpy").less
        self.best: float | None = None

    def before_fit(self) -> None:
        self.best = None

    def _improved(self) -> bool:
        row = self.learn.history[-1]
        if self.monitor not in row:
            raise CollabkitError(
                f"{type(self).__name__}: no {self.monitor!r} in the epoch table; it has {list(row)}"
            )
        value = float(row[self.monitor])
        if math.isnan(value):
            return False
        if self.best is None:
            self.best = value
            return True
        better = (
            value < self.best - self.min_delta if self.lower_is_better else value > self.best + self.min_delta
        )
        if better:
            self.best = value
        return better


class EarlyStoppingCallback(TrackerCallback):
    """Stops the fit when `monitor` has not improved by `min_delta` for `patience` epochs."""

    order = 10

    def __init__(
        self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, patience: int = 1
    ):
        super().__init__(monitor, comp, min_delta)
        self.patience, self.wait = int(patience), 0
        self.stopped_epoch: int | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self.wait, self.stopped_epoch = 0, None

    def after_epoch(self) -> None:
        if self._improved():
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch
            if self.learn.log is not None:
                self.learn.log(f"No improvement since epoch {self.learn.epoch - self.wait}: early stopping")
            raise CancelFitException()


class StopAfterEpochCallback(Callback):
    """Ends the fit after `n_epoch` epochs of a longer schedule, with the weights that epoch left.

    Why not a shorter schedule: a choice made on held-aside rows was of epoch n of this schedule
    (its learning rate still high, or already annealed); a one-cycle of n epochs is another model.
    """

    order = 20  # after early stopping; before checkpoints: none is written of the run's last epoch

    def __init__(self, n_epoch: int) -> None:
        self.n_epoch = int(n_epoch)

    def after_epoch(self) -> None:
        if self.learn.epoch + 1 >= self.n_epoch:
            raise CancelFitException()


class SaveModelCallback(TrackerCallback):
    """Saves the model when `monitor` improves (or every epoch) and loads the best back at the end.

    The weights go to `learn.path / learn.model_dir / f"{fname}.safetensors"`, as `learn.save` writes.
    """

    order = 5  # before early stopping, so the epoch that triggers the stop is still considered

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Any = None,
        min_delta: float = 0.0,
        fname: str = "model",
        every_epoch: bool = False,
        with_opt: bool = False,
    ) -> None:
        super().__init__(monitor, comp, min_delta)
        self.fname, self.every_epoch, self.with_opt = fname, every_epoch, with_opt
        self.best_epoch: int | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self.best_epoch = None

    def after_epoch(self) -> None:
        if self.every_epoch:
            self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        if self._improved():
            self.best_epoch = self.learn.epoch
            self.learn.save(self.fname, with_opt=self.with_opt)

    def after_fit(self) -> None:
        if not self.every_epoch and self.best_epoch is not None:
            self.learn.load(self.fname, with_opt=self.with_opt)
            if self.learn.log is not None:
                self.learn.log(
                    f"Better model found at epoch {self.best_epoch} with {self.monitor} {self.best:.6f}."
                )


class CSVLogger(Callback):
    """Writes the epoch table to `learn.path / fname` after every epoch (rewritten atomically).

    Every epoch that ran has its row, the one at which a callback stopped the fit included: a
    callback that runs before this one (EarlyStoppingCallback, order 10) may raise CancelFitException
    in `after_epoch` before this one sees the epoch, so the table is written again at `after_fit`,
    which always runs. (fastai's CSVLogger loses that epoch's row.)
    """

    order = 20

    def __init__(self, fname: str = "history.csv", append: bool = False) -> None:
        self.fname, self.append = fname, append
        self._start = 0
        self._written = 0  # rows in the file as last written

    @property
    def path(self) -> Path:
        return Path(self.learn.path) / self.fname

    def before_fit(self) -> None:
        self._start = 0 if self.append else len(self.learn.history)
        self._written = 0

    def after_epoch(self) -> None:
        self._write()

    def after_fit(self) -> None:
        if len(self.learn.history) - self._start != self._written:
            self._write()

    def _write(self) -> None:
        import pandas as pd

        rows = self.learn.history[self._start :]
        write_atomic(self.path, pd.DataFrame(rows).to_csv(index=False))
        self._written = len(rows)

    def read_log(self) -> Any:
        import pandas as pd

        return pd.read_csv(self.path)
