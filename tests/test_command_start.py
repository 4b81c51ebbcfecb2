"""The command starts light: `--help` and `--version` load no torch, and a Ctrl-C at any moment of
a start-up (torch importing included) is one line and exit 130, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collabkit import __version__
from collabkit.cli import app

runner = CliRunner()


def test_the_command_module_imports_no_heavy_library() -> None:
    heavy = "('torch', 'pandas', 'pyarrow', 'fastapi')"
    code = f"import sys, collabkit.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"collabkit {__version__}"


@pytest.mark.parametrize("delay", [0.15, 0.4, 1.0])  # after the interpreter itself has started
def test_ctrl_c_during_start_up_is_one_line(ratings_csv: Path, tmp_path: Path, delay: float) -> None:
    cmd = [
        sys.executable,
        "-m",
        "collabkit.cli",
        "train",
        "--data",
        str(ratings_csv),
        "--out",
        str(tmp_path / "m"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLLABKIT_DEBUG": ""})  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if "saved dotbias model" in out:  # finished first on a fast machine: nothing was interrupted
        return
    # 130 and one line; no output at all (-SIGINT, or 130 from a fresh venv still compiling its
    # bytecode) only while the interpreter itself is starting or ending
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err)
    if proc.returncode == 130 and err.strip():  # empty: the interpreter itself was still starting
        assert err.strip().splitlines()[-1] == "collabkit: interrupted"
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_an_interrupt_wrapped_by_python_is_still_ctrl_c(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C inside a class body's `__set_name__` (while a module imports) reaches the command as
    a RuntimeError caused by KeyboardInterrupt: still exit 130 and one line, not an internal error."""
    import typer

    from collabkit.cli.app import clean_errors

    with pytest.raises(typer.Exit) as exit_info, clean_errors():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from interrupt
    assert exit_info.value.exit_code == 130
    assert capsys.readouterr().err.strip() == "collabkit: interrupted"
