"""Ring attention: K/V blocks travel rank to rank while each rank attends its queries to the
block at hand; partial results merge through their log-sum-exp.

Blocks are the text keys (replicated, so attended locally, with the caption mask) and one
image block per ring member. Image-query partials merge as they arrive; text-query partials
are kept and merged in one fixed order (text, then ring members 0..r-1), so every rank of a
ring gets the bit-identical text stream it must hold replicated.
"""

from __future__ import annotations

from typing import Optional

import torch
from pid.parallel.p2p import exchange, wait
from pid.seams import _split_qkv_norm_rope


def attend_with_lse(q, k, v, key_bias: Optional[torch.Tensor] = None):
    """q [B, H, Nq, D], k/v [B, H, Nk, D], key_bias [B, 1, 1, Nk] additive (-inf hides a key)
    -> (out [B, H, Nq, D] float32, lse [B, H, Nq] float32); rows with every key hidden give
    out 0 and lse -inf, which the merge weighs as nothing."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=key_bias)
        if key_bias is not None:  # this kernel reports lse 0, not -inf, for a row with no visible key
            lse = lse.masked_fill(torch.isneginf(key_bias).all(-1), float("-inf"))
    elif key_bias is not None:  # the masked text block: few keys, so the plain product is small
        return attend_with_lse_math(q, k, v, key_bias)
    else:  # CUDA: the memory-efficient kernel returns its log-sum-exp (not yet run on a GPU)
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
        lse = lse[..., : q.shape[2]]
    return out.float().nan_to_num(0.0), lse.float()


def attend_with_lse_math(q, k, v, key_bias: Optional[torch.Tensor] = None):
    """`attend_with_lse` as plain matmuls in float32 (materialises the [Nq, Nk] scores)."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    if key_bias is not None:
        scores = scores + key_bias.float()
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse.nan_to_num(neginf=0.0).unsqueeze(-1))
    return torch.matmul(weights, v.float()).nan_to_num(0.0), lse


def merge(partial, out, lse):
    """Combine two attention partials over disjoint key sets (None = nothing yet)."""
    if partial is None:
        return out, lse
    acc_out, acc_lse = partial
    total = torch.logaddexp(acc_lse, lse)
    total_safe = total.nan_to_num(neginf=0.0)  # both -inf: weights 0, not NaN
    weight_acc = (acc_lse - total_safe).exp().unsqueeze(-1)
    weight_new = (lse - total_safe).exp().unsqueeze(-1)
    return acc_out * weight_acc + out * weight_new, total


def ring_attention(
    qkv_img: torch.Tensor,
    img_qk_norm,
    img_rope,
    num_heads: int,
    qkv_txt: Optional[torch.Tensor],
    txt_qk_norm,
    txt_rope,
    txt_key_mask: Optional[torch.Tensor],
    mesh,
    block_lengths: list[int],
):
    """The `pid.seams.attention` contract for this rank's image block (block_lengths[ring_index]
    tokens, img_rope already cut to them) with the other blocks held by the ring peers of `mesh`
    (a `pid.parallel.mesh.Mesh`). Returns (out_img [B, n, H*D], out_txt [B, Lt, H*D] or None)."""
    ring, ring_index, peers = mesh.ring, mesh.ring_index, mesh.ring_peers
    q, k, v = _split_qkv_norm_rope(qkv_img, num_heads, *img_qk_norm, img_rope)
    txt = None
    if qkv_txt is not None:
        txt = _split_qkv_norm_rope(qkv_txt, num_heads, *txt_qk_norm, txt_rope)
    image_partial = None
    text_partials = {}
    if txt is not None:
        q_txt, k_txt, v_txt = txt
        bias = None
        if txt_key_mask is not None:
            hidden = torch.zeros(txt_key_mask.shape, dtype=q.dtype, device=q.device)
            bias = hidden.masked_fill(~txt_key_mask.bool(), float("-inf"))[:, None, None, :]
        image_partial = attend_with_lse(q, k_txt, v_txt, bias)
        text_partials["text"] = attend_with_lse(q_txt, k_txt, v_txt, bias)
    kv = torch.stack([k, v]).contiguous()
    for step in range(ring):
        source = (ring_index - step) % ring
        pending = []
        if step + 1 < ring:
            incoming = kv.new_empty(*kv.shape[:3], block_lengths[(source - 1) % ring], kv.shape[-1])
            pending = exchange(
                [(peers[(ring_index + 1) % ring], kv)], [(peers[(ring_index - 1) % ring], incoming)], mesh.group
            )
        image_partial = merge(image_partial, *attend_with_lse(q, kv[0], kv[1]))
        if txt is not None:
            text_partials[source] = attend_with_lse(txt[0], kv[0], kv[1])
        wait(pending)
        if pending:
            kv = incoming
    out_img = image_partial[0].to(qkv_img.dtype).transpose(1, 2).flatten(2)
    if txt is None:
        return out_img, None
    text_partial = None
    for key in ["text", *range(ring)]:
        text_partial = merge(text_partial, *text_partials[key])
    return out_img, text_partial[0].to(qkv_txt.dtype).transpose(1, 2).flatten(2)
