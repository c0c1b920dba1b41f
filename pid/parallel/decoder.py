"""A distilled-sampler decoder whose every network step runs split over a process group."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

import torch.distributed as dist

from pid import seams
from pid.parallel.attention import ParallelAttention, local_attention
from pid.parallel.mesh import MODES, build_meshes, ranks_per_node, ulysses_degrees
from pid.parallel.split import RowSplit
from pid.sampling.distilled import Decoder


def attention_heads(net) -> dict[str, int]:
    """Head count of each attention in the network, by where it sits."""
    return {"patch blocks": net.num_heads, "pixel blocks": net.pixel_heads}


class SequenceParallelDecoder(Decoder):
    """`Decoder` whose decode splits the image over the ranks of `group` (see `sequence_parallel`).

    Every rank calls `decode` with the same arguments and gets the same full image. The noise
    is drawn whole on every rank from the same seed, so the image is the one a single process
    gives; each rank then keeps its band of patch rows through all steps, and the bands are
    gathered once, after the last step.
    """

    def __init__(self, decoder: Decoder, group=None, mode: str = "auto", ulysses_degree: Optional[int] = None):
        super().__init__(decoder.net, t_list=decoder.t_list, hoist_step_invariant=decoder.hoist_step_invariant)
        if not dist.is_initialized():
            raise RuntimeError("sequence_parallel needs torch.distributed initialised (torchrun, or init_process_group)")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.group = group
        self.group_ranks = tuple(dist.get_process_group_ranks(group or dist.group.WORLD))
        self.world = len(self.group_ranks)
        self.rank = dist.get_rank(group)
        self.mode = mode
        # Collectives (all_to_all, ring send/recv) cannot live inside a captured CUDA graph here.
        self.graphs = None
        self.ulysses_degrees = ulysses_degrees(
            mode, attention_heads(self.net), self.world, ulysses_degree, per_node=ranks_per_node(self.world)
        )
        self.meshes = build_meshes(self.ulysses_degrees, self.group_ranks, self.rank, group)
        self._split: Optional[RowSplit] = None

    def describe(self) -> str:
        """One line per attention: how its heads and tokens are split."""
        lines = []
        for name, heads in attention_heads(self.net).items():
            mesh = self.meshes[heads]
            lines.append(f"{name} ({heads} heads): Ulysses x{mesh.ulysses}, ring x{mesh.ring}")
        return f"sequence parallel over {self.world} ranks, mode={self.mode}: " + "; ".join(lines)

    def sample(self, inputs, t_list, draw, progress=False, timer=None):
        """Decoder.sample on this rank's band of rows; returns the full x0 on every rank."""
        split = RowSplit.even(inputs.image_hw, self.net.patch_size, self.world, self.rank)
        band_inputs = dataclasses.replace(inputs, image_hw=split.local_hw)
        with self._splitting(split):
            band = super().sample(band_inputs, t_list, lambda index: split.band(draw(index)), progress, timer)
        return split.gather(band, self.group)

    @contextlib.contextmanager
    def _splitting(self, split: RowSplit):
        previous = seams.override("attention", ParallelAttention(self.meshes, split, local_attention()))
        self._split = split
        try:
            yield
        finally:
            self._split = None
            seams.override("attention", previous)

    def _context(self, inputs):
        """The full image's step-invariant tensors, cut to this rank's band."""
        split = self._split
        full = self.net.prepare(inputs.captions, inputs.latent, inputs.sigma, split.image_hw, inputs.caption_mask)
        return split.shard_context(full)


def sequence_parallel(decoder: Decoder, group=None, mode: str = "auto", ulysses_degree: Optional[int] = None):
    """Split every decode of `decoder` over the ranks of `group` (default: the whole world).

    mode: "ulysses" (all-to-all over heads; the group size must divide every head count),
    "ring" (K/V passed rank to rank), "usp" (Ulysses inside groups of `ulysses_degree`
    consecutive ranks, ring across them) or "auto" (per attention, the largest Ulysses degree
    dividing its heads, the group size and the ranks per node; ring for the rest). Collective:
    every rank of the group calls it, then calls `decode` with the same arguments.
    Returns a `SequenceParallelDecoder` sharing `decoder.net`.
    """
    return SequenceParallelDecoder(decoder, group=group, mode=mode, ulysses_degree=ulysses_degree)
