"""Save and load a `TrainedModel` without pickle: JSON for settings and vocabularies, safetensors for tensors.

A model folder holds:
  config.json          format marker and version, the ModelConfig, split, data fingerprint, history,
                       results, and the sha256 and size of every other file
  vocab.json           users and items in index order (`#na#` first), and item titles where known
  weights.safetensors  the model's state_dict
  train.safetensors    the training interactions as indices (user_idx, item_idx, rating)

Saving never loses anything: the folder is written beside its destination and renamed into place,
the parent folder is fsynced, and only a folder that is provably a collabkit model (its format
marker and nothing but its own files) is ever replaced. A save killed between its two renames
leaves the previous model as `.NAME.old-PID`; the next save or load puts it back. Loading checks
every file's checksum and every table's size before allocating, and refuses non-finite weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from collabkit.atomic import fsync_dir, public_mode
from collabkit.bundle import DataInfo, TrainedModel
from collabkit.checksum import file_sha256
from collabkit.data.splits import SplitSpec
from collabkit.data.vocab import Vocab
from collabkit.errors import CollabkitError
from collabkit.jsonable import dumps
from collabkit.models import ModelConfig, build_model
from collabkit.models.base import family as model_family

FORMAT = "collabkit-model"
FORMAT_VERSION = 3  # 3: ModelConfig as {family, n_users, n_items, settings}
DATA_FILES = ("vocab.json", "weights.safetensors", "train.safetensors")
FILES = ("config.json", *DATA_FILES)
OWN_EXTRAS = ("report", "checkpoints")  # folders collabkit itself writes inside a model folder
# what collabkit writes inside them (interpret's report, train --checkpoint-every's run record)
OWN_FILES = {
    "report": ("report.html", "embedding_map.png", "embedding_map.svg"),
    "checkpoints": ("run.json", "checkpoint.safetensors"),
}
_ATOMIC_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")  # atomic.py's temporary files


def strangers(folder: Path) -> list[Path]:
    """Everything under a model or run folder that collabkit did not write (sorted).

    A save replaces the whole folder, so it may only do so when this list is empty: a file a user
    put beside the model, in its report/ or in its checkpoints/, must never be deleted with it.
    """
    found: list[Path] = []
    for p in folder.iterdir():
        if p.is_symlink():
            found.append(p)
        elif p.name in FILES and p.is_file():
            continue
        elif p.name in OWN_FILES and p.is_dir():
            for c in p.iterdir():
                tmp = _ATOMIC_TMP.match(c.name)
                own = c.name in OWN_FILES[p.name] or (tmp is not None and tmp["name"] in OWN_FILES[p.name])
                if c.is_symlink() or not c.is_file() or not own:
                    found.append(c)
        else:
            found.append(p)
    return sorted(found)


def is_model_folder(path: str | Path) -> bool:
    """True when `path` is a complete folder collabkit wrote: its format marker, every data file
    matching the checksum its config.json records (a hand-written marker is not enough), and
    nothing under it that collabkit did not write."""
    folder = Path(path)
    if not folder.is_dir() or folder.is_symlink():
        return False
    try:
        doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("files"), dict)):
        return False
    try:
        complete = all(file_sha256(folder / n) == doc["files"].get(n) for n in DATA_FILES)
    except OSError:
        return False
    return complete and not strangers(folder)


def _marked(folder: Path) -> bool:
    """Whether `folder` carries collabkit's model or run marker (complete or not)."""
    for marker, key, value in ((folder / "config.json", "format", FORMAT),
                               (folder / "checkpoints" / "run.json", "format", "collabkit-run")):  # fmt: skip
        try:
            doc = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get(key) == value:
            return True
    return False


def is_run_folder(path: str | Path) -> bool:
    """True for a folder holding only a training run's checkpoints (its `checkpoints/run.json` marker)."""
    folder = Path(path)
    try:
        doc = json.loads((folder / "checkpoints" / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    own = all(p.name in OWN_EXTRAS for p in folder.iterdir()) and not strangers(folder)
    return own and isinstance(doc, dict) and doc.get("format") == "collabkit-run"


def save_model(path: str | Path, trained: TrainedModel) -> Path:
    """Write `trained` to the folder `path`, atomically (see the module docstring).

    Raises:
        CollabkitError: `path` is a file, a symbolic link, or a folder that is not a collabkit model.
    """
    check_savable(trained.model)
    return _save_folder(Path(path), lambda tmp: _write_folder(tmp, trained))


def save_module(path: str | Path, model: torch.nn.Module, dls: Any, history: list[dict[str, float]]) -> Path:
    """Write your own module's weights with the data loaders' vocabularies and training rows.

    `config.json` names the module's class instead of a model config: `load_learner(path,
    model=YourModule(...))` loads the weights into an instance you build, since a class cannot be
    rebuilt from a file without running code from it (which is what pickle does).
    """
    check_savable(model)
    cls = type(model)
    header = {"model": None, "module": f"{cls.__module__}.{cls.__qualname__}", "history": history}
    return _save_folder(
        Path(path),
        lambda tmp: _write_parts(
            tmp, model, dls.user_vocab, dls.item_vocab, dls.train.x, dls.train.y, {}, header
        ),
    )


def load_module(
    path: str | Path, model: torch.nn.Module
) -> tuple[Vocab, Vocab, torch.Tensor, torch.Tensor, list]:
    """Load weights saved by `save_module` (or `save_model`) into `model`; returns the vocabularies,
    the training rows and the history."""
    src = Path(path)
    doc = _check_folder(src)
    vocab_doc = _read_json(src / "vocab.json")
    users = Vocab(vocab_doc["users"], name=vocab_doc.get("user_name", "user"))
    items = Vocab(vocab_doc["items"], name=vocab_doc.get("item_name", "item"))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_shapes(src / "weights.safetensors", expected)
    state = _load_tensors(src / "weights.safetensors")
    model.load_state_dict(state, strict=True)
    train = _load_tensors(src / "train.safetensors")
    return users, items, train["x"], train["y"], list(doc.get("history") or [])


def check_savable(model: torch.nn.Module) -> None:
    """Refuse, before anything is written or replaced, what loading would refuse: non-finite weights.

    A fit that diverged leaves NaN in the weights; saving it over a good model would replace a
    model that loads with one that never can.
    """
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CollabkitError(
                f"the model's {key} holds NaN or infinite values (the fit diverged: try a lower learning "
                "rate); refusing to save it, and nothing was replaced"
            )


def config_checksum(doc: dict[str, Any]) -> str:
    """sha256 of config.json's content without its own checksum: a flipped y_range is caught too."""
    body = {k: v for k, v in doc.items() if k != "config_sha256"}
    return hashlib.sha256(dumps(body, indent=None).encode("utf-8")).hexdigest()


def _save_folder(dest: Path, write: Any) -> Path:
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _recover(dest)
    _clean_orphans(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        write(tmp)
        public_mode(tmp, folder=True)
        for f in tmp.iterdir():
            public_mode(f, folder=f.is_dir())
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Read a model folder written by `save_model`; errors name the missing or damaged file."""
    src = Path(path)
    try:
        return _load_model(src, device)
    except CollabkitError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError, OverflowError) as e:
        # a value of the wrong type or size deep in a damaged file: one line, never a traceback
        raise CollabkitError(f"{src}: damaged model folder ({type(e).__name__}: {str(e)[:120]})") from e


def _load_model(src: Path, device: str | torch.device) -> TrainedModel:
    doc = _check_folder(src)
    if doc.get("model") is None:
        raise CollabkitError(
            f"{src} holds the weights of your own module {doc.get('module', '?')}; load them into an "
            "instance you build: load_learner(path, model=YourModule(...))"
        )
    vocab_doc = _read_json(src / "vocab.json")
    try:
        config = ModelConfig.from_dict(doc["model"])
        users = Vocab(vocab_doc["users"], name=vocab_doc.get("user_name", "user"))
        items = Vocab(vocab_doc["items"], name=vocab_doc.get("item_name", "item"))
        titles = {k: v for k, v in vocab_doc.get("item_titles", [])}
    except (KeyError, TypeError, ValueError) as e:
        raise CollabkitError(f"{src}: damaged model settings or vocabulary ({type(e).__name__}: {e})") from e
    if (len(users), len(items)) != (config.n_users, config.n_items):
        raise CollabkitError(
            f"{src / 'vocab.json'}: {len(users)} users and {len(items)} items, but the model has "
            f"{config.n_users} and {config.n_items}; the folder is damaged"
        )
    with torch.device("meta"):  # shapes only: a config claiming 10^9 items allocates nothing
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    fam = model_family(config.family)
    _check_shapes(src / "weights.safetensors", expected, upgrade=fam.upgrade_shapes)
    model = build_model(config)
    state = fam.upgrade_state(_load_tensors(src / "weights.safetensors"))
    train = _load_tensors(src / "train.safetensors")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CollabkitError(
                f"{src / 'weights.safetensors'}: {key} holds NaN or infinite values; refusing it"
            )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    train_x, train_y = train.get("x"), train.get("y")
    if train_x is None or train_y is None or train_x.ndim != 2 or len(train_x) != len(train_y):
        raise CollabkitError(f"{src / 'train.safetensors'}: damaged training interactions")
    if len(train_x) and (
        int(train_x[:, 0].max()) >= len(users)
        or int(train_x[:, 1].max()) >= len(items)
        or int(train_x.min()) < 0
    ):
        raise CollabkitError(
            f"{src / 'train.safetensors'}: indices outside the vocabularies; the folder is damaged"
        )
    model.attach_training(train_x.long(), train_y.float())  # what a family rebuilds, not saves
    split, data = doc.get("split"), doc.get("data")
    history, results = doc.get("history") or [], doc.get("results") or {}
    if not (
        isinstance(history, list) and all(isinstance(r, dict) for r in history) and isinstance(results, dict)
    ):
        raise CollabkitError(f"{src / 'config.json'}: damaged history or results")
    return TrainedModel(
        model=model,
        config=config,
        users=users,
        items=items,
        train_x=train_x,
        train_y=train_y,
        item_titles=titles,
        split=SplitSpec.from_dict(split) if split else None,
        data=DataInfo(**data) if data else None,
        history=history,
        results=results,
    )


def _check_folder(src: Path) -> dict[str, Any]:
    """config.json of a complete model folder whose files match their checksums."""
    if not src.exists():
        _recover(src)
    if not src.is_dir():
        what = "a file, not a model folder" if src.exists() else "no model folder here"
        raise CollabkitError(f"{src}: {what} (train one with `collabkit train --out {src}`)")
    for name in FILES:
        if not (src / name).is_file():
            raise CollabkitError(f"{src / name}: missing; this is not a complete collabkit model folder")
    doc = _read_json(src / "config.json")
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if version != FORMAT_VERSION or doc.get("format") != FORMAT:
        older = isinstance(version, int) and not isinstance(version, bool) and 1 <= version < FORMAT_VERSION
        why = "written by an older collabkit; train the model again" if older else "not a format it knows"
        raise CollabkitError(
            f"{src / 'config.json'}: model format {version!r}; this collabkit reads format "
            f"{FORMAT_VERSION} only ({why})"
        )
    if doc.get("config_sha256") != config_checksum(doc):
        raise CollabkitError(
            f"{src / 'config.json'}: its content does not match the checksum recorded when the model was "
            "saved; the settings were edited or damaged (train the model again)"
        )
    _check_files(src, doc.get("files") or {})
    return doc


# -- writing -------------------------------------------------------------------------------------


def _write_folder(folder: Path, t: TrainedModel) -> None:
    if t.config is None:
        raise CollabkitError(
            "this model wraps your own module: save it with learn.export, which records its vocabularies"
        )
    header = {
        "model": t.config.to_dict(),
        "split": None if t.split is None else t.split.to_dict(),
        "data": None if t.data is None else t.data.to_dict(),
        "history": t.history,
        "results": t.results,
    }
    _write_parts(folder, t.model, t.users, t.items, t.train_x, t.train_y, t.item_titles, header)


def _write_parts(
    folder: Path,
    model: torch.nn.Module,
    users: Vocab,
    items: Vocab,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    titles: dict[Any, str],
    header: dict[str, Any],
) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "weights.safetensors"))
    save_file(
        {"x": train_x.to(torch.int64).cpu().contiguous(), "y": train_y.float().cpu().contiguous()},
        str(folder / "train.safetensors"),
    )
    vocab = {
        "users": users.to_list(),
        "items": items.to_list(),
        "user_name": users.name,
        "item_name": items.name,
        "item_titles": [[k, v] for k, v in titles.items()],
    }
    (folder / "vocab.json").write_text(dumps(vocab), encoding="utf-8")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **header,
        "sizes": {"users": len(users), "items": len(items), "train": len(train_y)},
        "files": {name: file_sha256(folder / name) for name in DATA_FILES},
    }
    config["config_sha256"] = config_checksum(config)
    (folder / "config.json").write_text(dumps(config), encoding="utf-8")
    for f in folder.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(folder)


def check_own_folder(dest: Path, what: str = "the model", example: str = "runs/m") -> None:
    """Refuse a path that cannot be a folder of collabkit's own: the current or parent folder, a
    symbolic link, a file. What a folder that exists may hold is the caller's check."""
    if dest.name in ("", ".", ".."):  # the current or parent folder itself: a save would rename it
        raise CollabkitError(
            f"{str(dest)!r} names no folder of its own; give {what} a folder, e.g. {example}"
        )
    if dest.is_symlink():
        raise CollabkitError(
            f"{dest} is a symbolic link; collabkit will not replace it. Give the folder it points to "
            f"({os.path.realpath(dest)}) or a new path"
        )
    if dest.exists() and not dest.is_dir():
        raise CollabkitError(f"{dest} is a file, not a folder; choose another --out")


def check_destination(dest: Path) -> None:
    """Refuse a destination collabkit may not replace (see `save_model`)."""
    check_own_folder(dest)
    if dest.is_dir() and any(dest.iterdir()) and not (is_model_folder(dest) or is_run_folder(dest)):
        found = strangers(dest) if _marked(dest) else []
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise CollabkitError(
                f"{dest} holds {found[0]}{more}, which collabkit did not write; refusing to replace the "
                "folder (move that file out, or choose another --out)"
            )
        what = (
            "an incomplete or damaged collabkit model folder"
            if found == [] and _marked(dest)
            else ("not a collabkit model folder")
        )
        raise CollabkitError(
            f"{dest} exists and is {what}; refusing to replace it (choose a new or empty folder)"
        )


def _recover(dest: Path) -> None:
    """Put back the previous model if a save was killed between its two renames."""
    if dest.exists() or not dest.parent.is_dir():
        return
    olds = sorted(dest.parent.glob(f".{dest.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if is_model_folder(old):
            old.rename(dest)
            fsync_dir(dest.parent)
            print(
                f"collabkit: restored the previous model at {dest} (a save was interrupted)", file=sys.stderr
            )
            return


def _clean_orphans(dest: Path) -> None:
    """Remove temporary and superseded folders left by killed saves of `dest` (only collabkit's own)."""
    pattern = [f".{dest.name}.*.tmp", f".{dest.name}.old-*"]
    for glob in pattern:
        for p in dest.parent.glob(glob):
            if (
                p.is_dir()
                and not p.is_symlink()
                and all(c.name in FILES or c.name in OWN_EXTRAS for c in p.iterdir())
            ):
                shutil.rmtree(p, ignore_errors=True)


# -- reading -------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CollabkitError(f"{path}: damaged JSON ({str(e)[:80]})") from e


def _check_files(src: Path, files: dict[str, str]) -> None:
    if not isinstance(files, dict):
        raise CollabkitError(f"{src / 'config.json'}: damaged checksum list")
    for name in DATA_FILES:
        want = files.get(name)
        if want is None:
            raise CollabkitError(
                f"{src / 'config.json'}: no checksum recorded for {name}; the folder is damaged"
            )
        if file_sha256(src / name) != want:
            raise CollabkitError(
                f"{src / name}: checksum does not match the one recorded when the model was saved; "
                "the file was changed or damaged"
            )


Shapes = dict[str, tuple[int, ...]]


def _check_shapes(
    path: Path, expected: dict[str, tuple[int, ...]], upgrade: Callable[[Shapes], Shapes] | None = None
) -> None:
    """Compare the file's tensor shapes with the model's before reading any tensor data; `upgrade`
    maps an earlier layout of the family's weights to today's (see `CollabModel.upgrade_state`)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except OSError:
        raise  # a disk fault (ENOSPC, EIO) is said as such by the caller, not as a damaged file
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise CollabkitError(f"{path}: damaged weights file ({str(e)[:80]})") from e
    if upgrade is not None:
        have = upgrade(have)
    if have != expected:
        diff = sorted(set(have) ^ set(expected)) or [k for k in expected if have.get(k) != expected[k]]
        k = diff[0]
        raise CollabkitError(
            f"{path}: does not fit the model described in config.json ({k}: file {have.get(k)}, "
            f"model {expected.get(k)})"
        )


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except OSError:
        raise  # a disk fault (ENOSPC, EIO) is said as such by the caller, not as a damaged file
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CollabkitError(f"{path}: damaged tensor file ({str(e)[:80]})") from e
