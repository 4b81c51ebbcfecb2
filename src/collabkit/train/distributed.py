"""Training on several processes or machines with PyTorch's own engine (torchrun + DistributedDataParallel).

`torchrun --nproc-per-node N -m collabkit.cli train ...` starts N copies of the command; each joins
the process group from the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, ...), takes
every N-th batch of the same shuffled permutation, and averages gradients with the others every
step. So N processes at batch size B train as one process at batch size N*B would.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from collabkit.errors import CollabkitError


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> str:
    """Join the process group (gloo on CPU, NCCL on GPUs); returns this process's device."""
    if not launched_by_torchrun():
        return device
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
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
