"""CFG-parallel: the CFG sampler's batched call (both guidance branches, batch 2B) split over
the ranks of a group, each rank running the network on its share of the samples.

Use with `pid.sampling.cfg.sample_cfg(cfg_parallel(net), ..., batch_cfg=True)`: on 2 ranks,
rank 0 evaluates the unconditional branch and rank 1 the conditional one, each a batch of B,
the very calls the release makes on one GPU, so the result equals a single-process decode.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class BatchSplitNet:
    """Calls `net` on this rank's contiguous share of the batch and all-gathers the velocity.

    Every tensor argument whose first dimension is the batch is cut; the rest pass through.
    Other attributes are the network's. The batch must divide by the group size.
    """

    def __init__(self, net, group=None):
        if not dist.is_initialized():
            raise RuntimeError("cfg_parallel needs torch.distributed initialised (torchrun, or init_process_group)")
        self.net = net
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def __getattr__(self, name):
        return getattr(self.net, name)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        batch = x_t.shape[0]
        if batch % self.world:
            raise ValueError(
                f"a batch of {batch} does not split over {self.world} ranks; with sample_cfg pass batch_cfg=True "
                f"(batch 2B: one guidance branch per rank on 2 ranks)"
            )
        share = batch // self.world
        rows = slice(self.rank * share, (self.rank + 1) * share)

        def cut(value):
            is_batched = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch
            return value[rows] if is_batched else value

        local = self.net(x_t[rows], cut(t), y[rows], **{name: cut(value) for name, value in kwargs.items()})
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.contiguous(), group=self.group)
        return torch.cat(parts)


def cfg_parallel(net, group=None) -> BatchSplitNet:
    """`net` for `sample_cfg(..., batch_cfg=True)` with the two guidance branches on the ranks of `group`."""
    return BatchSplitNet(net, group)
