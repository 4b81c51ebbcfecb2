"""Training on several processes or machines with PyTorch's own engine (torchrun + DistributedDataParallel).

`torchrun --nproc-per-node N -m collabkit.cli train ...` starts N copies of the command; each joins
the process group from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, ...), takes
every N-th batch of the same shuffled permutation, and averages gradients with the others every
step. So N processes at batch size B train as one process at batch size N*B would.

The environment is checked before joining, and joining waits at most COLLABKIT_DIST_TIMEOUT seconds
(default 60): a WORLD_SIZE left over in a shell, without the peers it promises, is an error that names
the variables, never a hang.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import sys
import tempfile
from collections.abc import Iterator

import torch
import torch.distributed as dist

from collabkit.errors import CollabkitError

DEFAULT_TIMEOUT_S = 60.0
_ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_HOW = "start collabkit with torchrun, or unset WORLD_SIZE to train in one process"


def _env_int(name: str, default: int, minimum: int) -> int:
    """An integer environment variable, or a CollabkitError naming it."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise CollabkitError(f"{name}={raw[:40]!r} in the environment is not an integer; {_HOW}") from None
    if value < minimum:
        raise CollabkitError(f"{name}={raw[:40]!r} in the environment must be at least {minimum}; {_HOW}")
    return value


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when unset), checked."""
    return _env_int("WORLD_SIZE", 1, 1)


def join_timeout() -> datetime.timedelta:
    """How long joining the process group may take: COLLABKIT_DIST_TIMEOUT seconds, default 60."""
    raw = os.environ.get("COLLABKIT_DIST_TIMEOUT", "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise CollabkitError(f"COLLABKIT_DIST_TIMEOUT={raw[:40]!r} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return env_world_size() > 1


def _environment() -> str:
    return " ".join(f"{name}={os.environ[name]!r}" for name in _ENV_VARS if name in os.environ)


def _check_env(world: int) -> None:
    """Refuse a distributed environment that cannot work before waiting on it."""
    if "RANK" not in os.environ:
        raise CollabkitError(f"WORLD_SIZE={world} in the environment but no RANK; {_HOW}")
    rank = _env_int("RANK", 0, 0)
    if rank >= world:
        raise CollabkitError(f"RANK={rank} in the environment, but WORLD_SIZE={world}; {_HOW}")
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":  # torchrun's own store
        if not os.environ.get("MASTER_ADDR", "").strip():
            raise CollabkitError(f"WORLD_SIZE={world} in the environment but no MASTER_ADDR; {_HOW}")
        port = _env_int("MASTER_PORT", -1, 1)
        if not 1 <= port <= 65535:
            raise CollabkitError(
                f"WORLD_SIZE={world} in the environment needs MASTER_PORT (1..65535); {_HOW}"
            )


@contextlib.contextmanager
def _held_stderr() -> Iterator[None]:
    """Hold what PyTorch's C++ layer writes to stderr (a stack dump per failed connection try) and
    replay it only if the block succeeds; a failure is then told in collabkit's one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (a test runner's capture): nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        with contextlib.suppress(OSError):
            os.write(2, held.read())


def init_from_env(device: str) -> str:
    """Join the process group (gloo on CPU, NCCL on GPUs); returns this process's device.

    Raises:
        CollabkitError: a bad WORLD_SIZE/RANK/MASTER_* value, or the group not formed in time.
    """
    world = env_world_size()
    if world <= 1:
        return device
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        _check_env(world)
        timeout = join_timeout()
        try:
            with _held_stderr():
                dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
        except (RuntimeError, ValueError, OSError, TimeoutError) as e:  # DistError is a RuntimeError
            first = " ".join(str(e).split())[:200]
            raise CollabkitError(
                f"could not join a process group of {world} within {timeout.total_seconds():g} s ({first}); "
                f"the environment says {_environment()}: {_HOW} (COLLABKIT_DIST_TIMEOUT sets the wait)"
            ) from None
    if cuda:
        local = _env_int("LOCAL_RANK", 0, 0)
        if local >= torch.cuda.device_count():
            raise CollabkitError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs on this machine"
            )
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True in the process that logs and saves (rank 0), and when not distributed."""
    return rank() == 0


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
