"""How a sequence-parallel group splits each attention: a (Ulysses x ring) mesh per head count.

A group of P ranks holds the image tokens in P contiguous chunks, chunk k on group rank k.
An attention with H heads runs on a mesh of `ulysses` x `ring` = P ranks: rank k is
Ulysses index k % ulysses and ring index k // ulysses, so a Ulysses group is `ulysses`
consecutive ranks (one node, when ranks are laid out node by node, as torchrun does) and
the ring runs across them. Ulysses needs `ulysses` to divide H (each rank takes H / ulysses
whole heads); the ring has no such condition.

Modes: "ulysses" (ulysses = P for every attention), "ring" (ring = P), "usp" (one
`ulysses_degree` for every attention, ring = P / ulysses_degree) and "auto" (per head
count, the largest Ulysses degree that divides H, P and the ranks per node; ring for the rest).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence


MODES = ("auto", "ulysses", "ring", "usp")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def ranks_per_node(world: int) -> int:
    """Ranks sharing a node (torchrun's LOCAL_WORLD_SIZE), capped to the group size."""
    return max(1, min(world, int(os.environ.get("LOCAL_WORLD_SIZE", world))))


def ulysses_degrees(
    mode: str, head_counts: dict[str, int], world: int, ulysses_degree: Optional[int] = None, per_node: Optional[int] = None
) -> dict[int, int]:
    """The Ulysses degree of each attention's head count, or a ValueError naming the head
    counts and the degrees that would work. head_counts: {"patch blocks": 24, "pixel blocks": 16}."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    heads = sorted(set(head_counts.values()))
    described = ", ".join(f"{name} have {count} heads" for name, count in head_counts.items())
    common = math.gcd(*heads)
    valid = [d for d in divisors(world) if common % d == 0]
    if mode == "ring":
        return {h: 1 for h in heads}
    if mode == "ulysses":
        if common % world:
            raise ValueError(
                f"mode='ulysses' splits every attention's heads over all {world} ranks, but {described}: "
                f"Ulysses degrees that divide them all are {divisors(common)}; "
                f"use mode='ring' or 'usp' (Ulysses degree in {valid} x ring) or 'auto' for {world} ranks"
            )
        return {h: world for h in heads}
    if mode == "usp":
        degree = ulysses_degree if ulysses_degree is not None else max(d for d in valid if d <= (per_node or world))
        if world % degree or common % degree:
            raise ValueError(
                f"ulysses_degree={degree} must divide the {world} ranks and every head count ({described}); "
                f"valid degrees: {valid}"
            )
        return {h: degree for h in heads}
    if ulysses_degree is not None:
        raise ValueError("ulysses_degree is only read with mode='usp'")
    per_node = per_node or world
    return {h: math.gcd(h, world, per_node) for h in heads}


@dataclass(frozen=True)
class Mesh:
    """One attention's split: this rank's place in it and its peers.

    Peers are global ranks: `ulysses_members` by Ulysses index, `ring_peers` by ring index.
    """

    ulysses: int
    ring: int
    group_rank: int
    ulysses_members: tuple[int, ...]
    ring_peers: tuple[int, ...]  # global ranks of this rank's ring, by ring index
    group: Optional[object] = None  # the sequence-parallel process group (None: the world)

    @property
    def ulysses_index(self) -> int:
        return self.group_rank % self.ulysses

    @property
    def ring_index(self) -> int:
        return self.group_rank // self.ulysses


def build_meshes(degrees: dict[int, int], group_ranks: Sequence[int], group_rank: int, group=None) -> dict[int, Mesh]:
    """A Mesh per head count, for the rank at `group_rank` of `group`, whose global ranks are
    `group_ranks`."""
    world = len(group_ranks)
    meshes: dict[int, Mesh] = {}
    for heads, ulysses in sorted(degrees.items()):
        ring_index, ulysses_index = divmod(group_rank, ulysses)
        members = tuple(group_ranks[ring_index * ulysses + i] for i in range(ulysses))
        peers = tuple(group_ranks[r * ulysses + ulysses_index] for r in range(world // ulysses))
        meshes[heads] = Mesh(ulysses, world // ulysses, group_rank, members, peers, group)
    return meshes
