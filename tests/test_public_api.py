"""The documented surface: `from collabkit import *` gives a chapter reader what
`from fastai.collab import *` gives, as the right objects, and every name in `__all__` resolves."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import collabkit

# What a chapter-8 reader uses after `from fastai.collab import *`, and where collabkit defines it.
CHAPTER = {
    "CollabDataLoaders": "collabkit.data.loaders",
    "collab_learner": "collabkit.collab",
    "load_learner": "collabkit.collab",
    "Learner": "collabkit.train.learner",
    "EmbeddingDotBias": "collabkit.models.dot",
    "EmbeddingNN": "collabkit.models.nn",
    "DotProduct": "collabkit.models.dot",
    "Callback": "collabkit.train.callbacks",
    "CancelFitException": "collabkit.train.callbacks",
    "EarlyStoppingCallback": "collabkit.train.callbacks",
    "SaveModelCallback": "collabkit.train.callbacks",
    "CSVLogger": "collabkit.train.callbacks",
    "MSELossFlat": "collabkit.train.learner",
    "get_emb_sz": "collabkit.models.core",
    "sigmoid_range": "collabkit.models.core",
    "Embedding": "collabkit.models.core",
    "Module": "collabkit.models.core",
    "one_hot": "collabkit.models.core",
    "pca": "collabkit.models.core",
    "movielens_path": "collabkit.data.datasets",  # untar_data(URLs.ML_100k)
    "create_params": "collabkit.models.core",  # the chapter's DotProductBias from scratch
}
# collabkit's own names for using and saving models.
OWN = {
    "Recommender": "collabkit.recommend.recommender",
    "TrainedModel": "collabkit.bundle",
    "load_ratings": "collabkit.data",
    "load_movielens": "collabkit.data.datasets",
    "SplitSpec": "collabkit.data.splits",
    "CollabkitError": "collabkit.errors",
    "DataError": "collabkit.errors",
    "UnknownIdError": "collabkit.errors",
    "AmbiguousIdError": "collabkit.errors",
    "Vocab": "collabkit.data.vocab",
    "UnknownIdEncoding": "collabkit.data.vocab",
    "UnknownIdPrediction": "collabkit.recommend.recommender",
    "save_model": "collabkit.persist",
    "load_model": "collabkit.persist",
}


def star_namespace() -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec("from collabkit import *", namespace)  # noqa: S102
    namespace.pop("__builtins__", None)
    return namespace


def test_star_import_gives_the_chapter_names_as_the_right_objects() -> None:
    import importlib

    namespace = star_namespace()
    for name, module in {**CHAPTER, **OWN}.items():
        assert name in namespace, f"`from collabkit import *` lacks {name}"
        assert namespace[name] is getattr(importlib.import_module(module), name), (
            f"{name} is not {module}.{name}"
        )


def test_star_import_gives_exactly_all() -> None:
    assert set(star_namespace()) == set(collabkit.__all__)
    assert len(collabkit.__all__) == len(set(collabkit.__all__)), "a name is listed twice in __all__"


def test_every_name_in_all_resolves() -> None:
    missing = [n for n in collabkit.__all__ if not hasattr(collabkit, n)]
    assert not missing, f"__all__ names that collabkit lacks: {missing}"
    assert all(getattr(collabkit, n) is not None for n in collabkit.__all__)


def test_all_is_written_out() -> None:
    """`__all__` is a literal list in __init__.py (explicit, readable, checkable by tools)."""
    tree = ast.parse(Path(collabkit.__file__).read_text(encoding="utf-8"))
    lists = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(lists) == 1 and isinstance(lists[0], ast.List)
    assert all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in lists[0].elts)


def test_version() -> None:
    parts = collabkit.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2])


def test_the_chapter_callbacks_work_from_the_top_level() -> None:
    """The README's `EarlyStoppingCallback(patience=2)` and `SaveModelCallback(fname=...)` build."""
    stop = collabkit.EarlyStoppingCallback(patience=2)
    save = collabkit.SaveModelCallback(fname="best")
    assert stop.patience == 2 and save.fname == "best"
    assert isinstance(stop, collabkit.Callback) and issubclass(collabkit.CancelFitException, Exception)


def _literal_aliases() -> dict[str, dict[str, tuple[object, ...]]]:
    """Module-level `Name = Literal[...]` aliases in the package: name -> {module: values}."""
    import importlib
    import pkgutil

    found: dict[str, dict[str, tuple[object, ...]]] = {}
    for info in pkgutil.walk_packages(collabkit.__path__, "collabkit."):
        if info.name.startswith(("collabkit.service", "collabkit.cli")) or info.name.endswith("__main__"):
            continue  # the top layers hold no shared option types, and import FastAPI/typer
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if typing.get_origin(value) is typing.Literal and not name.startswith("_"):
                found.setdefault(name, {})[info.name] = typing.get_args(value)
    return found


def test_one_name_one_meaning_for_option_types() -> None:
    """Two `Literal` aliases with one name and different values read as one type and are not
    (vocab's `"na"/"error"` encoding of unknown ids, the recommender's `"error"/"mean"` answer)."""
    clashes = {name: where for name, where in _literal_aliases().items() if len(set(where.values())) > 1}
    assert not clashes, f"one name, different option sets: {clashes}"
    assert typing.get_args(collabkit.UnknownIdEncoding) == ("na", "error")


def test_importing_collabkit_loads_neither_service_nor_command() -> None:
    """The facade stays a library: FastAPI, uvicorn and typer load only with the service or command."""
    code = (
        "import sys, collabkit; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'typer') "
        "or m.startswith(('collabkit.service', 'collabkit.cli'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
