"""Showing a table once: displayed in a notebook, printed elsewhere.

Kept apart from training and data so that both can show tables without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def in_notebook() -> bool:
    """Whether code runs in a Jupyter kernel (where a table is displayed, not printed)."""
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def shown(frame: pd.DataFrame, show: bool) -> pd.DataFrame | None:
    """Display a table once: in a notebook as a table, elsewhere printed; None when shown.

    `show=False` returns the table instead, so a caller can use it (and a notebook cell does not
    show the same table twice).
    """
    if not show:
        return frame
    if in_notebook():
        from IPython.display import display  # type: ignore[import-not-found]

        display(frame)
    else:
        print(frame.to_string(index=False))
    return None


__all__ = ["in_notebook", "shown"]
