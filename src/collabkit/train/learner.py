"""The training loop: a fastai-shaped `Learner` with one-cycle fitting and an epoch table."""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn

from collabkit.data.loaders import CollabDataLoaders, DataLoader
from collabkit.display import shown
from collabkit.errors import CollabkitError
from collabkit.evaluate import metric_name, rmse
from collabkit.models import CollabModel, ModelConfig
from collabkit.models.settings import MAX_EPOCHS
from collabkit.scoring import TrainingFacts, fallback_mask, score_pairs, training_facts
from collabkit.train import args, checkpoint
from collabkit.train.callbacks import Callback, CancelFitException
from collabkit.train.fused import FusedDotTrainer, supports_fused
from collabkit.train.lr_find import lr_find
from collabkit.train.optim import FastAdamW, make_adam, set_hyper
from collabkit.train.recorder import Recorder, Summary, ds_index, results_table, summary_text
from collabkit.train.schedule import one_cycle_lr, one_cycle_mom
from collabkit.train.state import (
    FitSettings,
    Position,
    Schedule,
    TrainState,
    is_fused_state,
    load_optimizer_state,
    optimizer_state,
)

Metric = Callable[[Tensor, Tensor], float]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, so a run repeats."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class MSELossFlat(nn.Module):
    """Mean squared error of flattened predictions and targets (fastai's MSELossFlat)."""

    def forward(self, preds: Tensor, targs: Tensor) -> Tensor:
        return nn.functional.mse_loss(preds.reshape(-1), targs.reshape(-1).to(preds.dtype))


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}"


class Learner:
    """Trains `model` on `dls`: fastai's `Learner` for a collaborative-filtering model.

    The model takes a (B, 2) tensor of user and item indices. After each epoch a row of the table
    (epoch, train_loss, valid_loss, metrics, time) is logged and appended to `history`; the held-out
    figures come from `collabkit.scoring.score_pairs`, which scores a pair whose user or item has no
    training ratings by the biases-only baseline (the table says how many, once).

    `config` is the ModelConfig a built-in model was made from (`collab_learner` passes it), which
    `export` saves; None for your own module. Its state for checkpoints is one object:
    `train_state()` / `load_train_state(state)`.
    """

    def __init__(
        self,
        dls: CollabDataLoaders,
        model: nn.Module,
        loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
        lr: float = 1e-3,
        wd: float | None = None,
        metrics: Sequence[Metric] | Metric | None = None,
        device: str | torch.device | None = None,
        show_progress: bool = True,
        log: Callable[[str], None] | None = print,
        fused: bool | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        path: str | Path = ".",
        model_dir: str = "models",
        config: ModelConfig | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise CollabkitError(f"model must be a torch nn.Module, got {args.shown(model)}")
        if dls is not None and not isinstance(dls, CollabDataLoaders):
            raise CollabkitError(f"dls must be CollabDataLoaders (or None), got {args.shown(dls)}")
        if loss_func is not None and not callable(loss_func):
            raise CollabkitError(f"loss_func must be callable, got {args.shown(loss_func)}")
        self.dls: Any = dls
        self.model = model
        self.config = config
        self.loss_func = loss_func if loss_func is not None else MSELossFlat()
        self.lr = check_lr("lr", lr)
        self.wd = check_wd(0.01 if wd is None else wd)
        args.flag("show_progress", show_progress)
        if fused is not None:
            args.flag("fused", fused)
        if log is not None and not callable(log):
            raise CollabkitError(f"log must be a function taking one line (or None), got {args.shown(log)}")
        if metrics is not None and not callable(metrics):
            if isinstance(metrics, (str, bytes)) or not isinstance(metrics, Sequence):
                raise CollabkitError(
                    f"metrics must be a function or a list of them, got {args.shown(metrics)}"
                )
            if not all(callable(m) for m in metrics):
                raise CollabkitError(
                    f"metrics must be a function or a list of them, got {args.shown(metrics)}"
                )
        args.path("path", path)
        if not isinstance(model_dir, (str, Path)):
            raise CollabkitError(f"model_dir must be a folder name, got {args.shown(model_dir)}")
        self.metrics: list[Metric] = (
            [] if metrics is None else list(metrics) if isinstance(metrics, Sequence) else [metrics]
        )
        self.device = _device(device) if device is not None else _model_device(model)
        self.show_progress, self.log = show_progress, log
        self.history: list[dict[str, float]] = []
        self.opt: FastAdamW | None = None
        self.epoch = 0
        self.fused = fused  # None: the fused step where it applies (built-in dot model, MSE loss)
        self.path, self.model_dir = Path(path), model_dir
        self.cbs: list[Callback] = []
        self.add_cbs(cbs)
        self.recorder = Recorder(self)
        self.iter, self.loss, self.n_epoch, self.n_iter, self.epoch_in_fit = 0, torch.zeros(()), 0, 0, 0
        self.hyper: Callable[[float], tuple[float, float]] = lambda pos: (self.lr, 0.9)
        self.last_fit: FitSettings | None = None  # what the last fit ran with (lr, wd, epochs)
        self.valid_scores: dict[str, float] = {}  # the scorer's full result of the last validation
        self._facts: tuple[Tensor, Tensor, TrainingFacts] | None = None  # of the training tensors named
        self._opt: Any = None  # the last fit's optimiser (FastAdamW or the fused trainer)
        self._opt_state: dict[str, Tensor] | None = None  # loaded for the next fit to start from
        self._next = Position(0)  # the schedule epoch to run next (a checkpoint's position)
        self._resume: Position | None = None  # where a loaded checkpoint stopped inside an epoch
        self._interrupted: Position | None = None  # where Ctrl-C stopped the fit inside an epoch
        self._gen_state: Tensor | None = None  # the batch order's state when this epoch began
        self._fit_rows: list[dict[str, float]] = []

    # -- callbacks -------------------------------------------------------------------------
    def add_cbs(self, cbs: Callback | Sequence[Callback] | None) -> None:
        """Attach callbacks for every later fit."""
        for cb in _as_list(cbs):
            cb.learn = self
            self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)

    def remove_cbs(self, cbs: Callback | Sequence[Callback] | None) -> None:
        for cb in _as_list(cbs):
            if cb in self.cbs:
                self.cbs.remove(cb)

    def _event(self, name: str) -> None:
        for cb in self.cbs:
            if cb.wants(name):
                getattr(cb, name)()

    # -- fitting ---------------------------------------------------------------------------
    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: float | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        wd: float | None = None,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        cbs: Callback | Sequence[Callback] | None = None,
        start_epoch: int = 0,
    ) -> list[dict[str, float]]:
        """Train `n_epoch` epochs with fastai's one-cycle learning rate and momentum.

        `start_epoch` resumes a schedule part-way (after `load(..., with_opt=True)` of a checkpoint).
        `lr_max` is a number, or fastai's slice / one-per-group sequence: a collab model has one
        parameter group, so a slice's `stop` (its largest rate) is the peak, as fastai uses it.

        Raises:
            CollabkitError: an argument out of its range (named), or a loss that became NaN or
                infinite (naming the epoch and the learning rate) before anything was saved.
        """
        peak = self.lr if lr_max is None else check_lr("lr_max", lr_max)
        div = args.number("div", div, low=1.0)
        div_final = args.number("div_final", div_final, low=1.0)
        pct_start = args.number("pct_start", pct_start, low=0.0, high=1.0, high_open=True)
        moms = check_moms(moms)

        def hyper(pos: float) -> tuple[float, float]:
            return (one_cycle_lr(pos, peak, div, div_final, pct_start), one_cycle_mom(pos, moms, pct_start))

        return self._fit(n_epoch, hyper, wd, cbs, start_epoch, ("one_cycle", peak))

    def fit(
        self,
        n_epoch: int,
        lr: float | None = None,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        start_epoch: int = 0,
    ) -> list[dict[str, float]]:
        """Train `n_epoch` epochs at a constant learning rate (a number, or a slice as `fit_one_cycle`)."""
        rate = self.lr if lr is None else check_lr("lr", lr)
        return self._fit(n_epoch, lambda pos: (rate, 0.9), wd, cbs, start_epoch, ("constant", rate))

    def _fit(
        self,
        n_epoch: int,
        hyper: Callable[[float], tuple[float, float]],
        wd: float | None,
        cbs: Callback | Sequence[Callback] | None,
        start_epoch: int,
        rate: tuple[Schedule, float],
    ) -> list[dict[str, float]]:
        self._check_trains_by_gradient("has no epochs to fit; `model.fit_direct(x, y)` fits it")
        n_epoch = args.whole("n_epoch", n_epoch, 1, MAX_EPOCHS)
        start_epoch = args.whole("start_epoch", start_epoch, 0, n_epoch - 1)
        wd = self.wd if wd is None else check_wd(wd)
        if self.dls is None:
            raise CollabkitError(
                "this learner has no data: set learn.dls = CollabDataLoaders.from_df(...) first"
            )
        if self.dls.train.n == 0:
            raise CollabkitError("the training set has no rows; nothing to train on")
        resume = self._resume
        if resume is not None and resume.epoch_in_fit != start_epoch:
            raise CollabkitError(
                f"the loaded checkpoint stopped inside epoch {resume.epoch_in_fit} of its schedule; "
                f"fit with start_epoch={resume.epoch_in_fit}, got {start_epoch}"
            )
        self.last_fit = FitSettings(rate[0], float(rate[1]), float(wd), int(n_epoch))
        self._interrupted, self._next = None, Position(start_epoch)
        self.model.to(self.device)
        for dl in self.dls.loaders:
            dl.to(self.device)
        if _distributed():
            self.dls.train.shard(dist.get_rank(), dist.get_world_size())
        self.n_epoch, self.n_iter, self.hyper = n_epoch, len(self.dls.train), hyper
        total = n_epoch * self.n_iter
        fast = self._fused_trainer(hyper, total, wd)
        if fast is not None:
            self._opt = fast
            train_step: Callable[[Tensor, Tensor, int], Tensor] = fast.step
        else:
            train_model = self.model
            if _distributed():  # averages gradients across processes in backward
                train_model = nn.parallel.DistributedDataParallel(self.model)
            opt = self.opt = make_adam(self.model, lr=hyper(0)[0], wd=wd)
            self._opt = opt

            def train_step(xb: Tensor, yb: Tensor, step: int) -> Tensor:
                lr, mom = hyper(step / total)
                set_hyper(opt, lr, mom)
                loss = self.loss_func(train_model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss.detach() * len(yb)

        self._resume = None
        if self._opt_state is not None:
            load_optimizer_state(self._opt, self._opt_state)
            self._opt_state = None
        if fast is not None:
            fast.t = start_epoch * self.n_iter + (resume.batch if resume else 0)
        self.add_cbs(cbs)
        try:
            with _threads_for_batch(self.dls.bs):
                self._event("before_fit")
                names = ["epoch", "train_loss", "valid_loss", *map(metric_name, self.metrics), "time"]
                self._log_row(names, header=True)
                self._log_fallback()
                return self._epochs(start_epoch, train_step, fast.sync if fast else None, names, resume)
        except CancelFitException:
            return list(self._fit_rows)
        finally:
            try:
                self._event("after_fit")
            finally:
                self.remove_cbs(cbs)

    def _epochs(
        self,
        start_epoch: int,
        train_step: Callable[[Tensor, Tensor, int], Tensor],
        after_epoch: Callable[[], None] | None,
        names: list[str],
        resume: Position | None,
    ) -> list[dict[str, float]]:
        new_rows = self._fit_rows = []
        per_batch = any(cb.wants("after_batch") for cb in self.cbs)
        dl = self.dls.train
        for e in range(start_epoch, self.n_epoch):
            start = time.perf_counter()
            self.model.train()
            self.epoch_in_fit = e
            self._gen_state = dl.generator.get_state()  # a checkpoint mid-epoch redraws this epoch's order
            loss_sum, n_seen, skip = torch.zeros((), device=self.device), 0, 0
            if resume is not None and e == start_epoch:
                loss_sum += resume.loss_sum
                n_seen, skip = resume.n_seen, resume.batch
            step = e * self.n_iter + skip
            self._event("before_epoch")
            batch_losses: list[Tensor] = []
            sizes: list[int] = []
            try:
                with _progress(self.show_progress, self.n_iter, f"epoch {self.epoch}") as advance:
                    for b, (xb, yb) in enumerate(dl):
                        if b < skip:
                            continue
                        loss = train_step(xb, yb, step)  # the batch's summed loss
                        loss_sum += loss
                        n_seen += len(yb)
                        batch_losses.append(loss)
                        sizes.append(len(yb))
                        step += 1
                        self.iter, self.loss = b + 1, loss
                        if per_batch:  # fastai stops on NaN here; a callback must not see (or save) it
                            if not torch.isfinite(loss):
                                self._diverged(float(loss), step - 1)
                            self._event("after_batch")
                        advance()
            except KeyboardInterrupt:
                if after_epoch is not None:
                    after_epoch()
                self._interrupted = Position(
                    e, self.iter if batch_losses else skip, float(loss_sum.detach()), n_seen
                )
                self._event("after_interrupt")
                raise
            if after_epoch is not None:
                after_epoch()
            self.recorder.add_batches(batch_losses, sizes, e * self.n_iter + skip)
            train_loss = float(loss_sum) / max(n_seen, 1)
            if not math.isfinite(train_loss):
                bad = next((k for k, x in enumerate(batch_losses) if not torch.isfinite(x)), 0)
                self._diverged(train_loss, e * self.n_iter + skip + bad)
            valid = self.validate()
            row = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                **valid,
                "time": time.perf_counter() - start,
            }
            self.history.append(row)
            new_rows.append(row)
            self._next = Position(e + 1)  # a checkpoint written now resumes at the next epoch
            self._log_row([row[n] for n in names])
            try:
                self._event("after_epoch")  # learn.epoch is still this epoch's number, as in fastai
            finally:
                self.epoch += 1
        return new_rows

    def _diverged(self, loss: float, step: int) -> None:
        """Stop the fit: the loss became NaN or infinite at schedule step `step` (nothing saved)."""
        lr = self.hyper(step / max(self.n_epoch * self.n_iter, 1))[0]
        peak = f" (the fit's learning rate {self.last_fit.lr:g})" if self.last_fit is not None else ""
        raise CollabkitError(
            f"training diverged in epoch {self.epoch}: the loss became {loss} at learning rate "
            f"{lr:.3g}{peak}; try a lower learning rate (or a larger wd); nothing was saved"
        )

    def _fused_trainer(
        self, hyper: Callable[[float], tuple[float, float]], total: int, wd: float
    ) -> FusedDotTrainer | None:
        """The fused step for this fit, or None where the general autograd loop must run."""
        eligible = self._fusable()
        if self.fused is False or not eligible:
            if self.fused:
                raise CollabkitError(
                    "fused=True needs a built-in dot model (dot, dotbias) trained with MSELossFlat"
                )
            return None
        schedule = [hyper(i / total) for i in range(total)]
        return FusedDotTrainer(self.model, [lr for lr, _ in schedule], [mom for _, mom in schedule], wd)

    def uses_fused_step(self) -> bool:
        """Whether a fit runs the fused dot step (a built-in dot model, MSELossFlat, not fused=False)."""
        return self.fused is not False and self._fusable()

    def _fusable(self) -> bool:
        return supports_fused(self.model) and isinstance(self.loss_func, MSELossFlat)

    def _check_trains_by_gradient(self, what: str) -> None:
        """Refuse, in one line, a family that fits itself in closed form or by its own solver."""
        if isinstance(self.model, CollabModel) and not type(self.model).capabilities().lr_find:
            raise CollabkitError(
                f"model {self.model.name!r} is fitted in closed form or by its own solver, so it {what}"
            )

    def _log_fallback(self) -> None:
        """Say once, under the header, how many held-out rows the biases-only baseline scores."""
        valid = self.dls.valid
        if self.log is None or valid.n == 0:
            return
        facts = self._training_facts()
        cold = int(fallback_mask(valid.x, facts.user_counts, facts.item_counts).sum())
        if cold:
            self.log(
                f"({cold:,} of {valid.n:,} held-out rows have a user or item with no training ratings: "
                f"scored by the biases-only baseline, the mean {facts.mean:.4f} plus the known side's bias)"
            )

    def _log_row(self, values: Sequence[Any], header: bool = False) -> None:
        if self.log is None:
            return
        cells = []
        for name, v in zip(["epoch", "", "", *["" for _ in self.metrics], "time"], values, strict=False):
            if header:
                cells.append(f"{v:<11}")
            elif name == "epoch":
                cells.append(f"{int(v):<11d}")
            elif name == "time":
                cells.append(_fmt_time(v))
            else:
                cells.append(f"{v:<11.6f}")
        self.log("".join(cells).rstrip())

    # -- evaluation ------------------------------------------------------------------------
    @torch.inference_mode()
    def _outputs(self, dl: DataLoader) -> tuple[Tensor, Tensor]:
        was_training = self.model.training
        self.model.eval()
        self.model.to(self.device)
        outs, targs = [], []
        for i in range(0, dl.n, 65536):
            outs.append(self.model(dl.x[i : i + 65536].to(self.device)).float())
            targs.append(dl.y[i : i + 65536].to(self.device))
        self.model.train(was_training)
        if not outs:
            return torch.empty(0), torch.empty(0)
        return torch.cat(outs), torch.cat(targs)

    def validate(self, dl: DataLoader | None = None) -> dict[str, float]:
        """valid_loss and each metric on `dl` (the validation set by default), by the one scorer.

        A pair whose user or item has no training rows (in `dls.train`) is scored by the biases-only
        model of the training rows, as the run's final figures are (see
        `collabkit.scoring.score_pairs`); the full result of scoring the validation set, `n` and
        `fallback` included, is kept in `valid_scores`.
        """
        own = dl is None
        dl = self.dls.valid if dl is None else dl
        if dl.n == 0:
            return {"valid_loss": float("nan"), **{metric_name(m): float("nan") for m in self.metrics}}
        facts = self._training_facts()
        self.model.to(self.device)
        scores = score_pairs(
            self.model, dl.x, dl.y, facts.user_counts, facts.item_counts, facts.mean,
            loss_func=self.loss_func, metrics=self.metrics, biases=facts.biases,
        )  # fmt: skip
        if own:
            self.valid_scores = scores
        return {
            "valid_loss": scores["loss"],
            **{metric_name(m): scores[metric_name(m)] for m in self.metrics},
        }

    def _training_facts(self) -> TrainingFacts:
        """Training ratings per user and item index, and their mean (what the scorer needs): made
        once per training tensors, not every validation (6 s a time at 25M ratings, most of it the
        biases-only fallback)."""
        train = self.dls.train
        if self._facts is not None and self._facts[0] is train.x and self._facts[1] is train.y:
            return self._facts[2]
        facts = training_facts(train.x, train.y, self.dls.n_users, self.dls.n_items)
        self._facts = (train.x, train.y, facts)
        return facts

    def get_preds(self, ds_idx: int = 1, dl: DataLoader | None = None) -> tuple[Tensor, Tensor]:
        """(predictions, targets) on the validation set (ds_idx=1) or training set (0).

        Predictions are ratings of shape (N,), or for a classifier the level probabilities (N, L).
        """
        out, y = self._outputs(self.dls[ds_index(ds_idx)] if dl is None else dl)
        if isinstance(self.model, CollabModel):
            return self.model.output_to_preds(out).cpu(), y.cpu()
        return out.reshape(len(y), -1).squeeze(1).cpu() if len(y) else out, y.cpu()

    def predict(self, rows: Any) -> Any:
        """Ratings for raw ids: one row (a DataFrame row, a dict or a (user, item) pair) gives a
        float; a DataFrame with the user and item columns, or a list of pairs, gives an array.

        Unknown ids map to the `#na#` index, as fastai's do; use `Recommender` for a strict policy.
        """
        users: Any
        items: Any
        _check_rows(rows)
        single = isinstance(rows, (pd.Series, dict)) or (
            isinstance(rows, tuple) and len(rows) == 2 and not isinstance(rows[0], (tuple, list))
        )
        if isinstance(rows, (pd.Series, dict)):
            missing = [c for c in (self.dls.user_name, self.dls.item_name) if c not in rows]
            if missing:
                raise CollabkitError(
                    f"the row has no {missing[0]!r}; it has: {', '.join(map(str, rows.keys()))}"
                )
            users, items = [rows[self.dls.user_name]], [rows[self.dls.item_name]]
        elif isinstance(rows, pd.DataFrame):
            users, items = rows[self.dls.user_name], rows[self.dls.item_name]
        else:
            pairs = [rows] if single else list(rows)
            users, items = [p[0] for p in pairs], [p[1] for p in pairs]
        x = self.dls.encode(users, items)
        dl = DataLoader(x, torch.zeros(len(x)), bs=65536)
        out, _ = self._outputs(dl)
        if isinstance(self.model, CollabModel):
            preds = self.model.output_to_rating(out).cpu().numpy()
        else:
            preds = out.reshape(-1).cpu().numpy()
        return float(preds[0]) if single else preds

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool = True,
    ) -> Any:
        """fastai's learning-rate finder; returns its suggestions (`.valley`, `.slide`, `.minimum`,
        `.steep`), plots loss against learning rate, and leaves the model's weights as they were."""
        args.flag("show_plot", show_plot)
        found = lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot=show_plot)
        self.lr_find_result = found
        return found.suggestions

    # -- showing (the work is in collabkit.train.recorder) -------------------------------------
    def show_results(self, n: int = 9, ds_idx: int = 1, show: bool = True) -> pd.DataFrame | None:
        """`n` held-out rows with the true and predicted rating, by title where the data has titles.

        Shown once (displayed in a notebook, printed elsewhere) and None returned; `show=False`
        returns the table instead.
        """
        return shown(results_table(self, n, ds_idx), args.flag("show", show))

    def summary(self) -> Summary:
        """The model's layers and parameter counts, the loss, the optimiser and the callbacks."""
        return summary_text(self)

    # -- persistence (the work is in collabkit.train.checkpoint) ------------------------------
    def save(self, file: str | Path, with_opt: bool = False) -> Path:
        """Write the model's weights (and, with `with_opt`, the optimiser's state) to
        `path/model_dir/file.safetensors`, atomically. Returns the file's path."""
        return checkpoint.save_weights(self, file, with_opt)

    def load(self, file: str | Path, with_opt: bool = False, strict: bool = True) -> Learner:
        """Load weights written by `save` (and the optimiser state for the next fit, with `with_opt`)."""
        checkpoint.load_weights(self, file, with_opt, strict)
        return self

    def export(self, fname: str | Path = "export") -> str:
        """Save the model with its vocabularies and training rows to the folder `path/fname`.

        A built-in model is rebuilt by `load_learner(folder)`; your own module's weights are saved
        with it and loaded into an instance you build: `load_learner(folder, model=MyModel(...))`.
        """
        # lazy: only export writes a model folder (persist loads safetensors and the bundle)
        from collabkit.bundle import trained_from_learner
        from collabkit.persist import save_model, save_module

        dest = Path(fname) if Path(fname).is_absolute() else self.path / fname
        if self.config is not None and isinstance(self.model, CollabModel):
            return str(save_model(dest, trained_from_learner(self)))
        return str(save_module(dest, self.model, self.dls, self.history))

    def load_checkpoint(self, folder: str | Path) -> int:
        """Restore the checkpoint a `CheckpointCallback` wrote; returns the `start_epoch` to fit from."""
        return checkpoint.restore(self, folder)

    # -- training state (what checkpoints save) ------------------------------------------------
    def train_state(self) -> TrainState:
        """A snapshot of everything a resumed fit needs: weights, optimiser moments, the schedule
        position (inside an epoch, after Ctrl-C), the random states, the history and fit settings."""
        where = self._interrupted
        gen = self._gen_state if where is not None and self._gen_state is not None else None
        loader = gen if gen is not None else self.dls.train.generator.get_state()
        return TrainState(
            model={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            opt=self.opt_state(),
            rng_loader=loader.clone(),
            rng_torch=torch.get_rng_state(),
            position=where if where is not None else Position(self._next.epoch_in_fit),
            epochs_done=len(self.history),
            n_epoch=self.n_epoch,
            history=[dict(r) for r in self.history],
            fit=self.last_fit,
        )

    def load_train_state(self, state: TrainState) -> int:
        """Put `state` back (weights now; optimiser moments and position for the next fit);
        returns the `start_epoch` to pass to that fit."""
        try:
            self.model.load_state_dict(state.model)
        except RuntimeError as e:
            raise CollabkitError(
                f"the saved training state does not fit this model ({str(e)[:160]})"
            ) from None
        self.model.to(self.device)
        self._opt_state = state.opt
        self.dls.train.generator.set_state(state.rng_loader)
        torch.set_rng_state(state.rng_torch)
        self.epoch = state.epochs_done
        self.history = [dict(r) for r in state.history]
        self.last_fit = state.fit
        self._next = Position(state.position.epoch_in_fit)
        self._resume = state.position if state.position.batch else None
        self._interrupted = None
        return state.position.epoch_in_fit

    def opt_state(self) -> dict[str, Tensor] | None:
        """The optimiser's moments as named CPU tensors: the last fit's, else those loaded for the
        next fit; None before any."""
        if self._opt is not None:
            return {k: v.detach().cpu().clone() for k, v in optimizer_state(self._opt).items()}
        return None if self._opt_state is None else dict(self._opt_state)

    def load_opt_state(self, state: dict[str, Tensor]) -> None:
        """Moments (from `opt_state`) for the next fit's optimiser to start from."""
        if self._opt is not None and is_fused_state(state) != isinstance(self._opt, FusedDotTrainer):
            raise CollabkitError("optimiser state of another kind of training step (fused vs autograd)")
        self._opt_state = dict(state)

    def __repr__(self) -> str:
        loss = type(self.loss_func).__name__
        opt = "fused AdamW (dot step)" if self.uses_fused_step() else "AdamW"
        name = type(self.model).__name__
        return f"Learner({name}, loss {loss}, {opt}, {self.epoch} epochs trained; {self.dls!r})"


SMALL_BATCH = 4096  # below this, one thread per step beats two: the work is smaller than the hand-off


@contextmanager
def _threads_for_batch(bs: int) -> Iterator[None]:
    """One intra-op thread while training on small batches, the machine's default otherwise.

    A step at bs 64 is a few dozen tiny kernels; splitting each across threads costs more than it
    saves, and on a busy machine a kernel waiting for a descheduled thread stalls for milliseconds.
    """
    before = torch.get_num_threads()
    if bs < SMALL_BATCH and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _progress:
    """A transient progress bar on stderr while an epoch runs (nothing when off or not a terminal)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.label = total, label

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        )
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        every = max(1, self.total // 100)
        count = [0]

        def advance() -> None:
            count[0] += 1
            if count[0] % every == 0:
                self.bar.update(task, completed=count[0])

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def default_metrics(model: nn.Module) -> list[Metric]:
    """The model's own metrics (a CollabModel says which), else RMSE."""
    return model.default_metrics() if isinstance(model, CollabModel) else [rmse]


def _as_list(cbs: Callback | Sequence[Callback] | None) -> list[Callback]:
    if cbs is None:
        return []
    out = [cbs] if isinstance(cbs, Callback) else list(cbs) if isinstance(cbs, (list, tuple)) else None
    if out is None or not all(isinstance(cb, Callback) for cb in out):
        raise CollabkitError(f"cbs must be a Callback or a list of them, got {args.shown(cbs)}")
    return out


def check_lr(name: str, value: Any) -> float:
    """A learning rate: a finite number above 0, or fastai's slice / one-per-group sequence of them.

    A collab model has one parameter group, so (as fastai does with one group) a slice's `stop`
    is the rate used; a sequence must hold exactly one rate.
    """
    if isinstance(value, slice):
        if value.step is not None or value.stop is None:
            raise CollabkitError(
                f"{name} as a slice must be slice(start, stop) or slice(stop), got {value!r}"
            )
        if value.start is not None:
            start = args.number(f"{name}.start", value.start, low=0.0, low_open=True)
            stop = args.number(f"{name}.stop", value.stop, low=0.0, low_open=True)
            if start > stop:
                raise CollabkitError(f"{name} slice must run from low to high, got {value!r}")
        return args.number(f"{name}.stop", value.stop, low=0.0, low_open=True)
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != 1:
            raise CollabkitError(
                f"{name} must be one learning rate (this model has one parameter group), "
                f"got {args.shown(value)}"
            )
        return args.number(name, value[0], low=0.0, low_open=True)
    return args.number(name, value, low=0.0, low_open=True)


def check_wd(value: Any) -> float:
    """Decoupled weight decay: a finite number of at least 0 (a negative one grows the weights)."""
    return args.number("wd", value, low=0.0)


def check_moms(value: Any) -> tuple[float, float, float]:
    """One-cycle momentums (start, middle, end): three numbers from 0 up to (not including) 1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise CollabkitError(
            "moms must be three momentums (start, middle, end), each from 0 to below 1, "
            f"got {args.shown(value)}"
        )
    a, b, c = (args.number(f"moms[{k}]", v, low=0.0, high=1.0, high_open=True) for k, v in enumerate(value))
    return (a, b, c)


def _device(device: Any) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise CollabkitError(f"device must be a string such as 'cpu' or 'cuda', got {args.shown(device)}")
    try:
        return torch.device(device)
    except RuntimeError:
        raise CollabkitError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}") from None


def _check_rows(rows: Any) -> None:
    """`Learner.predict`'s rows: a DataFrame, one row (dict, Series, (user, item) pair) or pairs."""
    what = "a DataFrame, one row (a dict, a Series or a (user, item) pair) or a list of (user, item) pairs"
    if isinstance(rows, (pd.DataFrame, pd.Series, dict)):
        return
    if isinstance(rows, (str, bytes)) or not isinstance(rows, (list, tuple, np.ndarray)):
        raise CollabkitError(f"rows must be {what}, got {args.shown(rows)}")
    single = isinstance(rows, tuple) and len(rows) == 2 and not isinstance(rows[0], (tuple, list))
    pairs = [rows] if single else list(rows)
    for p in pairs:
        if isinstance(p, (str, bytes)) or not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2:
            raise CollabkitError(f"rows must be {what}; got the row {args.shown(p)}")
        args.one_id("the user of a row", p[0])
        args.one_id("the item of a row", p[1])
