"""Ulysses: an all-to-all turns "my tokens, all heads" into "all tokens of my Ulysses group,
my heads" before attention, and back after it.

Fused qkv rows are laid out [3, H, D] (as `pid.seams.attention` reads them), attention
outputs [H, D]; a rank with Ulysses index j takes heads [j * H/u, (j+1) * H/u).
gloo's all_to_all wants equal sizes, so uneven token chunks are padded to the longest.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_to_all(parts: list[torch.Tensor], recv_lengths: list[int], group) -> list[torch.Tensor]:
    """Send parts[j] ([B, n_j, W]) to member j; receive member i's [B, recv_lengths[i], W]."""
    longest = max(max(part.shape[1] for part in parts), max(recv_lengths))
    batch, width = parts[0].shape[0], parts[0].shape[2]
    send = []
    for part in parts:
        padded = part.new_zeros(batch, longest, width)
        padded[:, : part.shape[1]] = part
        send.append(padded)
    received = [torch.empty_like(send[0]) for _ in recv_lengths]
    dist.all_to_all(received, send, group=group)
    return [part[:, :length] for part, length in zip(received, recv_lengths)]


def head_slice(packed: torch.Tensor, groups: int, num_heads: int, degree: int, index: int) -> torch.Tensor:
    """[B, N, groups * H * D] -> heads of Ulysses index `index`: [B, N, groups * H/degree * D]."""
    batch, length, width = packed.shape
    head_dim = width // (groups * num_heads)
    local = num_heads // degree
    split = packed.view(batch, length, groups, degree, local, head_dim)[:, :, :, index]
    return split.reshape(batch, length, groups * local * head_dim)


def tokens_to_heads(packed: torch.Tensor, groups: int, num_heads: int, lengths: list[int], group) -> torch.Tensor:
    """This rank's tokens, all heads [B, n, groups*H*D] -> the group's tokens (concatenated
    in member order, lengths[i] from member i), this rank's heads [B, sum(lengths), groups*H/u*D]."""
    degree = len(lengths)
    parts = [head_slice(packed, groups, num_heads, degree, j) for j in range(degree)]
    return torch.cat(_all_to_all(parts, lengths, group), dim=1)


def heads_to_tokens(out: torch.Tensor, lengths: list[int], index: int, group) -> torch.Tensor:
    """The inverse for attention outputs: [B, sum(lengths), H/u*D] -> this rank's tokens with
    every head [B, lengths[index], H*D] (heads in member order)."""
    parts = list(out.split(lengths, dim=1))
    received = _all_to_all(parts, [lengths[index]] * len(lengths), group)
    return torch.cat(received, dim=-1)


def gather_heads(out: torch.Tensor, degree: int, group) -> torch.Tensor:
    """Replicated tokens (the text), this rank's heads [B, Lt, H/u*D] -> every head [B, Lt, H*D]."""
    received = [torch.empty_like(out) for _ in range(degree)]
    dist.all_gather(received, out.contiguous(), group=group)
    return torch.cat(received, dim=-1)
