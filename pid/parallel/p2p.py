"""Point-to-point exchanges between global ranks (one batched launch), the only transport the
attention uses: no process subgroups to create, and chunks of any length."""

from __future__ import annotations

import torch
import torch.distributed as dist


def exchange(sends: list[tuple[int, torch.Tensor]], receives: list[tuple[int, torch.Tensor]], group=None) -> list:
    """Start every send (peer, tensor) and receive (peer, buffer) at once, peers as global
    ranks inside `group` (None: the world); returns the work handles to wait on. NCCL wants
    every rank of `group` in its first batched call, which a decode's first attention gives."""
    ops = [dist.P2POp(dist.isend, tensor.contiguous(), peer, group) for peer, tensor in sends]
    ops += [dist.P2POp(dist.irecv, buffer, peer, group) for peer, buffer in receives]
    return dist.batch_isend_irecv(ops) if ops else []


def wait(works: list) -> None:
    for work in works:
        work.wait()
