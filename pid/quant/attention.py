"""fp8 attention: the reference semantics of a flash-attention kernel with quantized QK^T and PV.

Two recipes (named after the published kernels whose scheme they follow):
- "fa3":  Q, K and V in e4m3 with one scale per 128-token block and head; P = exp(S - m)
          cast to e4m3 as is (values in [0, 1]);
- "sage": K mean-smoothed (k - mean over tokens: adds a per-query constant to every score,
          so softmax is unchanged, and takes the shared offset out of K's range), Q and K in
          int8 with one scale per 128-token block and head (integer QK^T, exact), V in e4m3
          with one scale per channel, P scaled by 448 into e4m3's range before the cast.
Both: softmax statistics (running max m, row sums l) in float32 from the unquantized P,
float32 accumulation, keys processed in 128-token blocks with the running max of a
one-pass kernel (so P of block j is exp(S - m_j), m_j = max over blocks <= j).

`attention_core` is exact with respect to that kernel up to float32 summation order; it
materializes the score matrix, so it is a reference for CPU tests and the CPU decode,
not a fast path. The kernel itself, for the sage recipe, is `pid.quant.triton_attention`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from pid import seams
from pid.quant.fp8 import E4M3, E4M3_MAX, MIN_SCALE

BLOCK = 128  # tokens per Q block and per K/V block
INT8_MAX = 127.0


@dataclass(frozen=True)
class AttentionRecipe:
    name: str
    qk_format: str  # "e4m3" or "int8"
    smooth_k: bool
    v_scaling: str  # "block" (per 128 tokens and head) or "channel" (per head channel)
    p_scale: float  # P is multiplied by this before the e4m3 cast


RECIPES = {
    "fa3": AttentionRecipe("fa3", "e4m3", smooth_k=False, v_scaling="block", p_scale=1.0),
    "sage": AttentionRecipe("sage", "int8", smooth_k=True, v_scaling="channel", p_scale=E4M3_MAX),
}


def _blocks(x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """[B, H, L, D] -> [B, H, nb, BLOCK, D], the token axis padded with `fill`."""
    pad = -x.shape[2] % BLOCK
    x = F.pad(x, (0, 0, 0, pad), value=fill)
    return x.view(x.shape[0], x.shape[1], -1, BLOCK, x.shape[-1])


def _quantize(x: torch.Tensor, fmt: str, reduce_dims: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization with one scale per slice over `reduce_dims`; returns the
    quantized values as float32 (exact) and the float32 scales."""
    limit = INT8_MAX if fmt == "int8" else E4M3_MAX
    scale = (x.abs().amax(dim=reduce_dims, keepdim=True) / limit).clamp_min(MIN_SCALE)
    scaled = x / scale
    quantized = scaled.round().clamp(-limit, limit) if fmt == "int8" else scaled.clamp(-limit, limit).to(E4M3).float()
    return quantized, scale


def attention_core(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: Optional[torch.Tensor], recipe: AttentionRecipe
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v with the recipe's quantization: q [B, H, Lq, D], k, v
    [B, H, Lk, D], key_mask broadcastable to [B, 1, 1, Lk] (True = attend) or None ->
    [B, H, Lq, D] in q's dtype."""
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    q32, k32, v32 = q.float(), k.float(), v.float()
    if recipe.smooth_k:
        k32 = k32 - k32.mean(dim=2, keepdim=True)
    q_q, q_scale = _quantize(_blocks(q32), recipe.qk_format, (-2, -1))
    k_q, k_scale = _quantize(_blocks(k32), recipe.qk_format, (-2, -1))
    # Integer / e4m3 products, float32 sums; then the per-block scales and 1/sqrt(D).
    scores = torch.einsum("bhmid,bhnjd->bhminj", q_q, k_q)
    scores = scores * (q_scale.view(batch, heads, -1, 1, 1, 1) * k_scale.view(batch, heads, 1, 1, -1, 1))
    scores = scores.reshape(batch, heads, -1, k_q.shape[2], BLOCK)[:, :, :q_len] * head_dim**-0.5
    # Keys past k_len (block padding) and masked keys get -inf.
    valid = (torch.arange(k_q.shape[2] * BLOCK, device=q.device) < k_len).view(1, -1)
    if key_mask is not None:
        valid = valid & F.pad(key_mask.reshape(key_mask.shape[0], -1).bool(), (0, valid.shape[1] - k_len))
    scores = scores.masked_fill(~valid.view(-1, 1, 1, k_q.shape[2], BLOCK), float("-inf"))
    # One-pass softmax over key blocks: the running max after each block, in float32.
    running_max = scores.amax(dim=-1).cummax(dim=-1).values  # [B, H, Lq, nb]
    running_max = torch.where(torch.isinf(running_max), torch.zeros_like(running_max), running_max)
    probs = torch.exp(scores - running_max[..., None])
    row_sums = probs.sum(dim=-1)  # float32, from the unquantized P
    probs_q = (probs * recipe.p_scale).to(E4M3).float()
    v_dims = (-2, -1) if recipe.v_scaling == "block" else (-3, -2)
    v_q, v_scale = _quantize(_blocks(v32), "e4m3", v_dims)  # scale [B, H, nb, 1, 1] or [B, H, 1, 1, D]
    partial = torch.einsum("bhqnj,bhnjd->bhqnd", probs_q, v_q)  # [B, H, Lq, nb, D]
    partial = partial * (v_scale.squeeze(-2).unsqueeze(2) / recipe.p_scale)
    rescale = torch.exp(running_max - running_max[..., -1:])  # exp(m_j - m_final)
    out = (partial * rescale[..., None]).sum(dim=3) / (row_sums * rescale).sum(dim=-1, keepdim=True)
    return out.to(q.dtype)


def fp8_attention(recipe: AttentionRecipe, *args, **kwargs):
    """`pid.seams.attention` with `attention_core` instead of SDPA (same arguments); on a GPU
    the sage recipe runs the Triton kernel (`pid.quant.triton_attention`) instead."""
    q, k, v, key_mask, text_len = seams.joint_qkv(*args, **kwargs)
    with_text = (args[4] if len(args) > 4 else kwargs.get("qkv_txt")) is not None
    core = attention_core
    if q.is_cuda and recipe == RECIPES["sage"]:
        from pid.quant.triton_attention import triton_attention_core as core
    return seams.split_joint_output(core(q, k, v, key_mask, recipe), text_len, with_text)


def attention_op(recipe_name: str) -> Callable:
    """The attention core a quantized attention module runs (seams.attention's signature)."""
    if recipe_name not in RECIPES:
        raise ValueError(f"unknown fp8 attention recipe {recipe_name!r}; recipes: {sorted(RECIPES)}")
    op = functools.partial(fp8_attention, RECIPES[recipe_name])
    op.recipe = recipe_name
    return op
