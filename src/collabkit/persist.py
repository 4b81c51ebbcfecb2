"""Save and load trained models without pickle: JSON for config and vocabularies, safetensors for tensors.

A model folder holds:
  config.json          format version, the ModelConfig, column names, training settings and results
  vocab.json           users and items in index order (`#na#` first), and item titles where known
  weights.safetensors  the model's state_dict
  train.safetensors    the training interactions as indices (user_idx, item_idx, rating), so that
                       recommendations can leave out what a user already rated
The folder is written beside its destination and moved into place in one rename, so an
interrupted save never leaves a half-written model, and an older model at the same path survives
until the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError
from collabkit.models import ModelConfig, build_model

FORMAT_VERSION = 1
FILES = ("config.json", "vocab.json", "weights.safetensors", "train.safetensors")


@dataclass
class SavedModel:
    """A model with what it needs to answer in raw ids."""

    model: nn.Module
    config: ModelConfig
    users: Vocab
    items: Vocab
    train_x: Tensor  # (N, 2) int64 user/item indices seen in training
    train_y: Tensor  # (N,) float32 ratings
    item_titles: dict[Any, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def item_counts(self) -> Tensor:
        """(n_items,) number of training ratings of each item index."""
        return torch.bincount(self.train_x[:, 1], minlength=len(self.items))

    def user_counts(self) -> Tensor:
        """(n_users,) number of training ratings of each user index."""
        return torch.bincount(self.train_x[:, 0], minlength=len(self.users))

    def item_means(self) -> Tensor:
        """(n_items,) mean training rating of each item index (NaN for an item with none)."""
        sums = torch.bincount(self.train_x[:, 1], weights=self.train_y.double(), minlength=len(self.items))
        return (sums / self.item_counts()).float()

    def user_means(self) -> Tensor:
        """(n_users,) mean training rating of each user index (NaN for a user with none)."""
        sums = torch.bincount(self.train_x[:, 0], weights=self.train_y.double(), minlength=len(self.users))
        return (sums / self.user_counts()).float()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=_json_default, ensure_ascii=False), encoding="utf-8")


def save_model(path: str | Path, saved: SavedModel) -> Path:
    """Write `saved` to the folder `path`, atomically (see the module docstring)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not (dest / "config.json").exists() and any(dest.iterdir()):
        raise CollabkitError(f"{dest} exists and is not a collabkit model folder; refusing to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in saved.model.state_dict().items()}
        save_file(state, str(tmp / "weights.safetensors"))
        save_file(
            {"x": saved.train_x.to(torch.int64).contiguous(), "y": saved.train_y.float().contiguous()},
            str(tmp / "train.safetensors"),
        )
        _write_json(
            tmp / "config.json",
            {"format_version": FORMAT_VERSION, "model": saved.config.to_dict(), "meta": saved.meta},
        )
        titles = [[k, v] for k, v in saved.item_titles.items()]
        _write_json(
            tmp / "vocab.json",
            {
                "users": saved.users.to_list(),
                "items": saved.items.to_list(),
                "user_name": saved.users.name,
                "item_name": saved.items.name,
                "item_titles": titles,
            },
        )
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Read a model folder written by `save_model`; errors name the missing or damaged file."""
    src = Path(path)
    if not src.is_dir():
        raise CollabkitError(f"{src}: no model folder here (train one with `collabkit train --out {src}`)")
    for name in FILES:
        if not (src / name).exists():
            raise CollabkitError(f"{src / name}: missing; this is not a complete collabkit model folder")
    try:
        config_doc = json.loads((src / "config.json").read_text(encoding="utf-8"))
        vocab_doc = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CollabkitError(f"{src}: damaged JSON ({e})") from e
    version = config_doc.get("format_version")
    if version != FORMAT_VERSION:
        raise CollabkitError(
            f"{src / 'config.json'}: model format {version!r}; this collabkit reads format {FORMAT_VERSION}"
        )
    config = ModelConfig.from_dict(config_doc["model"])
    model = build_model(config)
    try:
        state = load_file(str(src / "weights.safetensors"))
        train = load_file(str(src / "train.safetensors"))
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise CollabkitError(f"{src}: damaged weights file ({e})") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CollabkitError(
            f"{src / 'weights.safetensors'}: does not fit a {config.model!r} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.to(device).eval()
    users = Vocab(vocab_doc["users"], name=vocab_doc.get("user_name", "user"))
    items = Vocab(vocab_doc["items"], name=vocab_doc.get("item_name", "item"))
    titles = {k: v for k, v in vocab_doc.get("item_titles", [])}
    return SavedModel(model, config, users, items, train["x"], train["y"], titles, config_doc.get("meta", {}))


def save_learner(learn: Any, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save a Learner made by `collab_learner` (it knows its config), with its training rows."""
    config = getattr(learn, "config", None)
    if config is None:
        raise CollabkitError(
            "only models built by collab_learner (or the command) can be exported; "
            "for your own nn.Module, save learn.model.state_dict() with safetensors"
        )
    dls = learn.dls
    titles: dict[Any, str] = {}
    table = dls.table
    if table is not None and "title" in table.columns and dls.item_name != "title":
        pairs = table[[dls.item_name, "title"]].drop_duplicates(dls.item_name)
        titles = dict(zip(pairs[dls.item_name].tolist(), pairs["title"].astype(str).tolist(), strict=False))
    info = {"history": learn.history, **(meta or {})}
    saved = SavedModel(
        learn.model,
        config,
        dls.user_vocab,
        dls.item_vocab,
        dls.train.x.cpu(),
        dls.train.y.cpu(),
        titles,
        info,
    )
    return save_model(path, saved)
