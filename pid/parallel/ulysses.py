"""Ulysses: an all-to-all turns "my tokens, all heads" into "all tokens of my Ulysses group,
my heads" before attention, and back after it.

Fused qkv rows are laid out [3, H, D] (as `pid.seams.attention` reads them), attention
outputs [H, D]; the member with Ulysses index j takes heads [j * H/u, (j+1) * H/u).
`mesh` (a `pid.parallel.mesh.Mesh`) names the members and this rank's index among them.
"""

from __future__ import annotations

import torch

from pid.parallel.p2p import exchange, wait


def _all_to_all(parts: list[torch.Tensor], recv_lengths: list[int], mesh) -> list[torch.Tensor]:
    """Send parts[j] ([B, n_j, W]) to member j; receive member i's [B, recv_lengths[i], W]."""
    members, index = mesh.ulysses_members, mesh.ulysses_index
    batch, width = parts[0].shape[0], parts[0].shape[2]
    received = [
        parts[index] if i == index else parts[index].new_empty(batch, length, width)
        for i, length in enumerate(recv_lengths)
    ]
    others = [i for i in range(len(members)) if i != index]
    wait(exchange([(members[i], parts[i]) for i in others], [(members[i], received[i]) for i in others], mesh.group))
    return received


def head_slice(packed: torch.Tensor, groups: int, num_heads: int, degree: int, index: int) -> torch.Tensor:
    """[B, N, groups * H * D] -> heads of Ulysses index `index`: [B, N, groups * H/degree * D]."""
    batch, length, width = packed.shape
    head_dim = width // (groups * num_heads)
    local = num_heads // degree
    split = packed.view(batch, length, groups, degree, local, head_dim)[:, :, :, index]
    return split.reshape(batch, length, groups * local * head_dim)


def tokens_to_heads(packed: torch.Tensor, groups: int, num_heads: int, lengths: list[int], mesh):
    """This rank's tokens, all heads [B, n, groups*H*D] -> the group's tokens (concatenated
    in member order, lengths[i] from member i), this rank's heads [B, sum(lengths), groups*H/u*D]."""
    degree = len(lengths)
    parts = [head_slice(packed, groups, num_heads, degree, j) for j in range(degree)]
    return torch.cat(_all_to_all(parts, lengths, mesh), dim=1)


def heads_to_tokens(out: torch.Tensor, lengths: list[int], mesh) -> torch.Tensor:
    """The inverse for attention outputs: [B, sum(lengths), H/u*D] -> this rank's tokens with
    every head [B, lengths[index], H*D] (heads in member order)."""
    parts = list(out.split(lengths, dim=1))
    return torch.cat(_all_to_all(parts, [lengths[mesh.ulysses_index]] * len(lengths), mesh), dim=-1)


def gather_heads(out: torch.Tensor, mesh) -> torch.Tensor:
    """Replicated tokens (the text), this rank's heads [B, Lt, H/u*D] -> every head [B, Lt, H*D]."""
    degree = mesh.ulysses
    return torch.cat(_all_to_all([out] * degree, [out.shape[1]] * degree, mesh), dim=-1)
