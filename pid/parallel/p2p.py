"""Point-to-point exchanges between global ranks (one batched launch), the only transport the
attention uses: no process subgroups to create, and chunks of any length."""

from __future__ import annotations

import torch
import torch.distributed as dist


def exchange(sends: list[tuple[int, torch.Tensor]], receives: list[tuple[int, torch.Tensor]]) -> list:
    """Start every send (peer, tensor) and receive (peer, buffer) at once; returns the work
    handles to wait on."""
    ops = [dist.P2POp(dist.isend, tensor.contiguous(), peer) for peer, tensor in sends]
    ops += [dist.P2POp(dist.irecv, buffer, peer) for peer, buffer in receives]
    return dist.batch_isend_irecv(ops) if ops else []


def wait(works: list) -> None:
    for work in works:
        work.wait()
