"""Joining the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""

from __future__ import annotations

import atexit
import os
from typing import Optional

import torch
import torch.distributed as dist

TORCHRUN_HINT = "torchrun --nproc-per-node N -m pid decode ... --parallel auto"


def init_from_env(device: Optional[str] = None) -> torch.device:
    """Initialise the default group from torchrun's environment (NCCL on CUDA, gloo on CPU)
    and return this rank's device: cuda:LOCAL_RANK unless `device` says cpu."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(f"--parallel needs the environment torchrun sets (RANK, WORLD_SIZE); run: {TORCHRUN_HINT}")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device here")
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=local if use_cuda else None)
        atexit.register(dist.destroy_process_group)
    return local


def is_main_rank() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0
