"""The README runs: every fenced block of README.md, in order, on the real ML-100k.

Python blocks run as written, one namespace per section (a section's blocks build on each other,
as in a notebook), in one scratch folder shared by the whole README, so `runs/dotbias` written by
one section is there for the next, as in a reader's shell. Shell blocks' `collabkit ...` lines run
through the installed console script in that folder and must exit 0. `collabkit serve` is started
on 127.0.0.1 (a free port in place of 8000), the section's `curl` lines are sent to it and must
succeed, and it is stopped within a bounded time.

What cannot run here is listed in `NOT_RUN` (by command) and `NOT_CODE` (by block language) with
the reason; a command or language that is in neither fails the test, so a new README block is run
or explicitly excused, never silently skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = {"bash", "sh", "shell", "console"}

# Commands the suite does not run, by how the line starts, with the reason.
NOT_RUN = {
    "bash scripts/quickstart.sh": "sets up .venv (installs packages); its training is the commands below",
    "bash scripts/test.sh": "sets up .venv and runs this very suite",
    ".venv/bin/torchrun": "several processes; tests/test_distributed.py runs the 2-process case",
    "torchrun": "a cluster run across machines",
    ".venv/bin/python bench/": "benchmarks take minutes each",
    "bash bench/setup_peers.sh": "installs peer libraries (fastai, Surprise, LensKit, implicit) in venvs",
}
# Blocks that are not collabkit code, by language.
NOT_CODE = {
    "": "a text diagram (the package layout)",
    "nginx": "a web-server configuration for the reader's nginx",
    "dockerfile": "a container recipe; building an image needs docker and the network",
}
SERVE_TIMEOUT_S = 90  # the model loads once; then /health answers


@dataclass
class Block:
    section: str
    lang: str
    line: int  # 1-based line of the opening fence
    code: str


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with their section title, language and line."""
    blocks: list[Block] = []
    body: list[str] = []
    section, fence, lang, start, indent = "", None, "", 0, 0
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            if line.startswith("#") and not stripped.startswith("#!"):
                section = line.lstrip("#").strip()
            m = re.match(r"^(\s*)(```+)\s*([\w+-]*)", line)
            if m:
                fence, lang, start, body = m.group(2), m.group(3).lower(), n, []
                indent = len(m.group(1))
            continue
        if stripped.startswith(fence) and stripped.strip("`") == "":
            blocks.append(Block(section, lang, start, "\n".join(body) + "\n"))
            fence = None
            continue
        body.append(line[indent:] if line[:indent].strip() == "" else line)
    assert fence is None, f"README.md:{start}: a code block is never closed"
    return blocks


def shell_commands(code: str) -> list[list[str]]:
    """The command lines of a shell block: continuations joined, comments dropped, split as a shell would."""
    commands, pending = [], ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def excused(words: list[str]) -> str | None:
    line = " ".join(words)
    return next((why for start, why in NOT_RUN.items() if line.startswith(start)), None)


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


def test_the_readme_parser_finds_blocks_and_commands() -> None:
    text = (
        "# A\n\n```python\nx = 1\n```\n\n## B\n\n"
        "  ```bash\n  collabkit a --b 'c d' \\\n     -n 2   # note\n  ```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.section, b.lang, b.line) for b in blocks] == [("A", "python", 3), ("B", "bash", 9)]
    assert shell_commands(blocks[1].code) == [["collabkit", "a", "--b", "c d", "-n", "2"]]
    assert excused(["torchrun", "--nnodes", "2"]) and not excused(["collabkit", "train"])
    assert len([b for b in BLOCKS if b.lang == "python"]) >= 3
    assert len(SECTIONS) >= 5


def test_every_block_is_run_or_excused() -> None:
    """A block in a language this test does not know, or a command it neither runs nor excuses,
    would be a README example nobody checks."""
    unknown = [
        f"README.md:{b.line} ```{b.lang}" for b in BLOCKS if b.lang not in {"python", *SHELL, *NOT_CODE}
    ]
    assert not unknown, f"blocks this test neither runs nor excuses: {unknown}"
    loose = [
        f"README.md:{b.line} {' '.join(w)}"
        for b in BLOCKS
        if b.lang in SHELL
        for w in shell_commands(b.code)
        if w[0] not in ("collabkit", "curl") and not excused(w)
    ]
    assert not loose, f"commands this test neither runs nor excuses: {loose}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One scratch folder for the whole README, with ML-100k in the cache (offline route if need be)."""
    from collabkit.data.datasets import load_movielens

    home = os.environ.get("COLLABKIT_HOME") or str(tmp_path_factory.mktemp("collabkit-home"))
    load_movielens("ml-100k", cache_dir=home, progress=False)
    folder = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLLABKIT_HOME", home)
        mp.setenv("MPLBACKEND", "Agg")
        mp.chdir(folder)
        yield folder


def collabkit_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m collabkit.cli`."""
    script = Path(sys.executable).with_name("collabkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "collabkit.cli"]


def run_collabkit(words: list[str], where: str, cwd: Path) -> None:
    done = subprocess.run(
        [*collabkit_command(), *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{where}: `{shlex.join(words)}` exited {done.returncode}\n{output}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(words: list[str], cwd: Path, where: str) -> Iterator[int]:
    """`collabkit serve ...` on 127.0.0.1 at a free port, until the block ends; stopped in bounded time."""
    port = free_port()
    proc = subprocess.Popen(
        [*collabkit_command(), *words[1:], "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                said = proc.stdout.read() if proc.stdout is not None else ""
                pytest.fail(f"{where}: `{shlex.join(words)}` exited {proc.returncode}: {said[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"{where}: `collabkit serve` did not answer /health in {SERVE_TIMEOUT_S} s"
            )
            time.sleep(0.3)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"{where}: `collabkit serve` did not stop within 20 s of Ctrl-C")
        if proc.stdout is not None:
            proc.stdout.close()


def run_shell_block(block: Block, cwd: Path) -> int:
    """Run a shell block's commands; the number run."""
    ran = 0
    server: contextlib.ExitStack = contextlib.ExitStack()
    port: int | None = None
    with server:
        for words in shell_commands(block.code):
            where = f"README.md:{block.line} ({block.section})"
            if excused(words):
                continue
            if words[:2] == ["collabkit", "serve"]:
                port = server.enter_context(serving(words, cwd, where))
            elif words[0] == "collabkit":
                run_collabkit(words, where, cwd)
            elif words[0] == "curl":
                assert port is not None, f"{where}: `curl` before `collabkit serve` in the same block"
                assert shutil.which("curl"), "curl is needed to run the README's service examples"
                args = [w.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for w in words[1:]]
                done = subprocess.run(
                    ["curl", "--fail-with-body", "-sS", "--max-time", "30", *args],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert done.returncode == 0, (
                    f"{where}: `{shlex.join(words)}` failed: {done.stdout[-1000:]} {done.stderr[-1000:]}"
                )
                assert done.stdout.lstrip().startswith("{"), f"{where}: not JSON: {done.stdout[:200]}"
            else:
                pytest.fail(f"{where}: no way to run `{shlex.join(words)}`; run it or list it in NOT_RUN")
            ran += 1
    return ran


@pytest.mark.slow
@pytest.mark.parametrize("section", SECTIONS)
def test_readme_section_runs(section: str, workdir: Path) -> None:
    """Each section's blocks run in README order (sections build on earlier ones, as in a reader's shell)."""
    namespace: dict[str, object] = {"__name__": "__readme__"}
    ran = 0
    for block in (b for b in BLOCKS if b.section == section):
        if block.lang == "python":
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102
            ran += 1
        elif block.lang in SHELL:
            ran += run_shell_block(block, workdir)
    excused_only = all(
        b.lang in NOT_CODE or all(excused(w) for w in shell_commands(b.code))
        for b in BLOCKS
        if b.section == section
    )
    assert ran > 0 or excused_only, f"section {section!r}: nothing ran"
    if section.startswith("The chapter's code"):
        # what the section promises: the export and the Recommender answer in raw ids
        assert (workdir / "runs" / "dotbias" / "config.json").is_file()
        assert (workdir / "export" / "config.json").is_file()
