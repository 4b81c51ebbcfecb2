"""The run folder: where `collabkit train --checkpoint-every N --out RUN_DIR` keeps what a resume needs.

    RUN_DIR/checkpoints/checkpoint.safetensors   the TrainState (weights, optimiser, position, random
                                                 states) and, in its metadata, the run record
    RUN_DIR/checkpoints/run.json                 the run record: {"format": "collabkit-run", "data",
                                                 "config", ...}: the marker that says "a run is here"

Write order: the checkpoint first, then run.json (once). Both are atomic, and the checkpoint holds
the run record too, so any folder with a checkpoint can be resumed, wherever a kill lands: a
missing run.json is rewritten from the checkpoint. When the run finishes, the saved model replaces
the whole folder (two renames, see `persist.save_model`); a kill between them leaves the run aside
as `.RUN_DIR.old-PID`, which `read_run` puts back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch

from collabkit.atomic import fsync_dir, write_atomic, write_with
from collabkit.errors import CollabkitError
from collabkit.train.state import TrainState

RUN_FORMAT = "collabkit-run"  # run.json's marker
CHECKPOINT_FORMAT = "collabkit-checkpoint"
CHECKPOINTS = "checkpoints"  # the folder inside RUN_DIR
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_FILE = "config.json"  # a finished model folder's marker (persist's)


@dataclass(frozen=True)
class RunRecord:
    """What a resume needs: the data to load, the training settings, and where the run stands."""

    run_dir: Path
    data: str  # the data's name or path, as the run was given it
    config: dict[str, Any]  # the training settings (`TrainConfig.to_dict()`)
    info: dict[str, Any]  # everything else the run recorded (column names, checkpoint_every, ...)
    epochs_done: int  # epochs the checkpoint has completed
    n_epoch: int  # epochs the run's schedule has

    @property
    def checkpoints(self) -> Path:
        """The folder `Learner.load_checkpoint` reads."""
        return self.run_dir / CHECKPOINTS


def checkpoint_folder(run_dir: str | Path) -> Path:
    """RUN_DIR/checkpoints."""
    return Path(run_dir) / CHECKPOINTS


def run_record(data: str, config: dict[str, Any], **info: Any) -> dict[str, Any]:
    """The record a run writes beside its checkpoints (what `CheckpointCallback(run=...)` takes)."""
    return {"data": data, "config": dict(config), **info}


# -- writing -----------------------------------------------------------------------------------------
def write_checkpoint(folder: str | Path, state: TrainState, run: dict[str, Any] | None = None) -> Path:
    """Write `state` (and the run record) to `folder/checkpoint.safetensors`, then `run.json` if absent.

    Both writes are atomic; the checkpoint comes first and carries the record, so a kill between
    the two leaves a resumable folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = state.state_dict()
    metadata = {"format": CHECKPOINT_FORMAT, "meta": json.dumps(sd["meta"], allow_nan=True),
                "sha256": tensor_digest(sd["tensors"])}  # fmt: skip
    if run:
        metadata["run"] = json.dumps(_marked(run))
    path = write_with(
        folder / CHECKPOINT_FILE, lambda tmp: save_file(sd["tensors"], str(tmp), metadata=metadata)
    )
    if run and _read_json(folder / RUN_FILE) != _marked(run):
        write_run_file(folder, run)
    return path


def write_run_file(folder: str | Path, run: dict[str, Any]) -> Path:
    """Write `folder/run.json` atomically."""
    return write_atomic(Path(folder) / RUN_FILE, json.dumps(_marked(run), indent=1))


def _marked(run: dict[str, Any]) -> dict[str, Any]:
    return {"format": RUN_FORMAT, **{k: v for k, v in run.items() if k != "format"}}


def tensor_digest(tensors: dict[str, Any]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: a flipped byte in a
    checkpoint's data (which safetensors itself does not notice) is caught on resume."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# -- reading -----------------------------------------------------------------------------------------
def read_checkpoint(folder: str | Path) -> tuple[TrainState, dict[str, Any] | None]:
    """The TrainState in `folder/checkpoint.safetensors`, and the run record it carries (or None).

    Raises:
        CollabkitError: no checkpoint there, or a damaged one.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise CollabkitError(f"{path}: no checkpoint here (train with --checkpoint-every to write them)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        meta = json.loads(metadata["meta"])
        run = json.loads(metadata["run"]) if "run" in metadata else None
        tensors = load_file(str(path))
    except Exception as e:  # safetensors and json raise their own types for damaged files
        raise CollabkitError(f"{path}: damaged checkpoint ({str(e)[:80]})") from e
    if metadata.get("sha256") != tensor_digest(tensors):
        raise CollabkitError(
            f"{path}: damaged checkpoint (its tensors do not match the checksum written with them); "
            "train the run again from the start"
        )
    try:
        state = TrainState.from_state_dict({"tensors": tensors, "meta": meta})
    except CollabkitError as e:
        raise CollabkitError(f"{path}: {e}") from None
    return state, run


def read_run(run_dir: str | Path) -> RunRecord:
    """What resuming the run in `run_dir` needs: its data, settings and where its checkpoint stands.

    Puts back a run folder that a killed final save left aside (`.NAME.old-PID`, `run_dir`
    missing), and rewrites a missing or damaged run.json from the checkpoint's copy of the record.

    Raises:
        CollabkitError: `run_dir` holds a finished model (nothing to resume), no run, or a run
            record that is damaged with no checkpoint to recover it from.
    """
    run_dir = Path(run_dir)
    _put_back(run_dir)
    folder = run_dir / CHECKPOINTS
    run_path = folder / RUN_FILE
    if not (folder / CHECKPOINT_FILE).is_file():
        if (run_dir / MODEL_FILE).is_file():
            raise CollabkitError(
                f"{run_dir}: this run has finished and its model is saved there; there is nothing to resume"
            )
        if run_path.is_file():
            raise CollabkitError(
                f"{run_path}: the run was stopped before its first checkpoint; train it again from the start"
            )
        raise CollabkitError(f"{run_path}: no run to resume here (train with --checkpoint-every N)")
    state, carried = read_checkpoint(folder)
    record = _read_json(run_path)
    if not _is_record(record):
        if not _is_record(carried):
            raise CollabkitError(f"{run_path}: missing or damaged run record, and the checkpoint holds none")
        record = carried
        write_run_file(folder, carried)  # the marker `persist` looks for before replacing the folder
    info = {k: v for k, v in record.items() if k not in ("format", "data", "config")}
    return RunRecord(run_dir, str(record["data"]), dict(record["config"]), info, state.epochs_done,
                     state.n_epoch)  # fmt: skip


def is_run_folder(path: str | Path) -> bool:
    """True for a folder holding only a run's checkpoints (a run record or a checkpoint in them)."""
    folder = Path(path)
    if not folder.is_dir() or folder.is_symlink():
        return False
    ckpt = folder / CHECKPOINTS
    if not ckpt.is_dir() or any(p.name != CHECKPOINTS for p in folder.iterdir()):
        return False
    return _is_record(_read_json(ckpt / RUN_FILE)) or (ckpt / CHECKPOINT_FILE).is_file()


def _put_back(run_dir: Path) -> None:
    """Rename the newest `.NAME.old-PID` run folder back to `run_dir` when `run_dir` is missing."""
    if run_dir.exists() or not run_dir.parent.is_dir():
        return
    aside = [p for p in run_dir.parent.glob(f".{run_dir.name}.old-*") if is_run_folder(p)]
    if not aside:
        return
    newest = max(aside, key=lambda p: p.stat().st_mtime)
    newest.rename(run_dir)
    fsync_dir(run_dir.parent)


def _is_record(doc: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(doc, dict) and doc.get("format") == RUN_FORMAT and "config" in doc and "data" in doc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = [
    "CHECKPOINTS",
    "CHECKPOINT_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "RunRecord",
    "checkpoint_folder",
    "is_run_folder",
    "read_checkpoint",
    "read_run",
    "run_record",
    "write_checkpoint",
    "write_run_file",
]
