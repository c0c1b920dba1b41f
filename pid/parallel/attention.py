"""The `attention` seam on a sequence-parallel group: Ulysses inside each Ulysses group, ring
across them, the previously installed attention (reference or fused kernel) as the local
attention when no ring is needed."""

from __future__ import annotations

from typing import Callable

from pid.parallel import ulysses
from pid.parallel.mesh import Mesh
from pid.parallel.ring import ring_attention
from pid.parallel.split import RowSplit


class ParallelAttention:
    """Drop-in for `pid.seams.attention` while a sequence-parallel decode runs.

    Takes this rank's image tokens (qkv_img [B, n_k, 3C]), replicated text and the full RoPE
    tables; returns this rank's image output [B, n_k, C] and the full text output [B, Lt, C].
    """

    def __init__(self, meshes: dict[int, Mesh], split: RowSplit, local: Callable):
        self.meshes = meshes
        self.split = split
        self.local = local

    def __call__(
        self,
        qkv_img,
        img_qk_norm,
        img_rope,
        num_heads: int,
        qkv_txt=None,
        txt_qk_norm=None,
        txt_rope=None,
        txt_key_mask=None,
    ):
        if num_heads not in self.meshes:
            raise ValueError(f"no sequence-parallel mesh for an attention with {num_heads} heads; meshes: {sorted(self.meshes)}")
        mesh = self.meshes[num_heads]
        counts = self.split.token_counts
        degree, ring_index = mesh.ulysses, mesh.ring_index
        # Ring block b = the tokens of Ulysses group b, contiguous in raster order.
        block_lengths = [sum(counts[b * degree : (b + 1) * degree]) for b in range(mesh.ring)]
        member_lengths = counts[ring_index * degree : (ring_index + 1) * degree]
        if degree > 1:
            qkv_img = ulysses.tokens_to_heads(qkv_img, 3, num_heads, member_lengths, mesh)
            if qkv_txt is not None:
                qkv_txt = ulysses.head_slice(qkv_txt, 3, num_heads, degree, mesh.ulysses_index)
        local_heads = num_heads // degree
        if mesh.ring == 1:
            out_img, out_txt = self.local(
                qkv_img, img_qk_norm, img_rope, local_heads, qkv_txt, txt_qk_norm, txt_rope, txt_key_mask
            )
        else:
            start = sum(block_lengths[:ring_index])
            rows = slice(start, start + block_lengths[ring_index])
            block_rope = None if img_rope is None else tuple(table[rows] for table in img_rope)
            out_img, out_txt = ring_attention(
                qkv_img, img_qk_norm, block_rope, local_heads, qkv_txt, txt_qk_norm, txt_rope, txt_key_mask,
                mesh, block_lengths,
            )
        if degree > 1:
            out_img = ulysses.heads_to_tokens(out_img, member_lengths, mesh)
            if out_txt is not None:
                out_txt = ulysses.gather_heads(out_txt, mesh)
        return out_img, out_txt


def local_attention() -> Callable:
    """The attention installed now (a fused kernel's, or the reference)."""
    from pid import seams

    return seams.active_overrides().get("attention", seams.attention.reference)

