"""A Triton kernel for the "sage" fp8 attention recipe of `pid.quant.attention`.

One program per (128-query block, batch x head): int8 QK^T per 128-key block (int32
accumulation), the block scales and 1/sqrt(D) applied in float32, a one-pass softmax with
float32 running max and row sums, P scaled by 448 into e4m3, e4m3 PV with float32
accumulation, V's per-channel scales and 1/l at the end. Q, K (mean-smoothed) and V are
quantized by the same PyTorch code as the reference (`attention._quantize`), so the kernel
matches `attention_core` up to float32 summation order (tests/pid/quant, under the
interpreter). Head dims are padded to a power of two (72 -> 128). `pid.quant.attention`
calls it for CUDA tensors; the default GPU policy keeps attention in bf16 until a device run
has checked it. Never run on a GPU. Compiled without one (benchmarks/STATIC.md, 8 warps, d64 / d72
padded to 128): sm_90a wgmma for both products (s8, e4m3), 1 CTA per SM; sm_100a tcgen05 for the
e4m3 PV (kind::f8f6f4), the int8 QK^T on tcgen05 kind::i8 with Triton 3.9 but on mma.sync with 3.6.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from pid.quant.attention import BLOCK, RECIPES, AttentionRecipe, _blocks, _quantize
from pid.quant.triton_quantize import round_to_e4m3
from pid_kernels.runtime import interpreting, tl, triton

NUM_WARPS = 8


@triton.jit
def _sage_attention_kernel(
    q_ptr, q_scale_ptr, k_ptr, k_scale_ptr, v_ptr, v_scale_ptr, valid_ptr, out_ptr,
    heads, q_len, q_blocks, k_blocks, valid_stride, sm_scale, p_scale,
    BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, INTERPRETED: tl.constexpr,
):
    block_m, batch_head = tl.program_id(0), tl.program_id(1)
    batch = batch_head // heads
    dims = tl.arange(0, HEAD_DIM)
    tokens = tl.arange(0, BLOCK)
    rows = block_m * BLOCK + tokens
    head_offset = batch_head.to(tl.int64) * q_blocks * BLOCK * HEAD_DIM
    q = tl.load(q_ptr + head_offset + rows[:, None] * HEAD_DIM + dims[None, :])
    q_scale = tl.load(q_scale_ptr + batch_head * q_blocks + block_m)
    kv_offset = batch_head.to(tl.int64) * k_blocks * BLOCK * HEAD_DIM
    running_max = tl.full((BLOCK,), float("-inf"), tl.float32)
    row_sum = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, HEAD_DIM), tl.float32)
    for block_n in range(0, k_blocks):
        cols = block_n * BLOCK + tokens
        k = tl.load(k_ptr + kv_offset + cols[:, None] * HEAD_DIM + dims[None, :])
        scores = tl.dot(q, tl.trans(k), out_dtype=tl.int32).to(tl.float32)  # exact integer products
        scores = scores * (q_scale * tl.load(k_scale_ptr + batch_head * k_blocks + block_n)) * sm_scale
        valid = tl.load(valid_ptr + batch * valid_stride + cols) != 0
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
        probs = tl.exp(scores - safe_max[:, None])
        alpha = tl.exp(running_max - safe_max)
        row_sum = row_sum * alpha + tl.sum(probs, 1)
        v = tl.load(v_ptr + kv_offset + cols[:, None] * HEAD_DIM + dims[None, :])
        probs_q = round_to_e4m3(probs * p_scale, INTERPRETED)
        if INTERPRETED:  # the same values, multiplied exactly in float32
            pv = tl.dot(probs_q.to(tl.float32), v.to(tl.float32), input_precision="ieee")
        else:
            pv = tl.dot(probs_q, v)
        acc = acc * alpha[:, None] + pv
        running_max = new_max
    v_scale = tl.load(v_scale_ptr + batch_head * HEAD_DIM + dims)
    out = acc * (v_scale[None, :] / p_scale) / row_sum[:, None]
    tl.store(out_ptr + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], out, mask=(rows < q_len)[:, None])


def triton_attention_core(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: Optional[torch.Tensor],
    recipe: AttentionRecipe = RECIPES["sage"],
) -> torch.Tensor:
    """`attention.attention_core` for the sage recipe (same arguments and result)."""
    if recipe != RECIPES["sage"]:
        raise ValueError(f"the Triton fp8 attention implements the sage recipe only, got {recipe.name!r}")
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    padded_dim = triton.next_power_of_2(max(head_dim, 16))
    pad = (0, padded_dim - head_dim)
    q32, k32 = F.pad(q.float(), pad), F.pad(k.float(), pad)
    k32 = k32 - k32.mean(dim=2, keepdim=True)
    q_q, q_scale = _quantize(_blocks(q32), "int8", (-2, -1))
    k_q, k_scale = _quantize(_blocks(k32), "int8", (-2, -1))
    v_q, v_scale = _quantize(_blocks(F.pad(v.float(), pad)), "e4m3", (-3, -2))
    valid = torch.arange(k_q.shape[2] * BLOCK, device=q.device).view(1, -1) < k_len
    if key_mask is not None:
        valid = valid & F.pad(key_mask.reshape(key_mask.shape[0], -1).bool(), (0, valid.shape[1] - k_len))
    valid = valid.to(torch.int8).contiguous()
    out = torch.empty(batch, heads, q_q.shape[2] * BLOCK, padded_dim, device=q.device, dtype=torch.float32)
    grid = (q_q.shape[2], batch * heads)
    _sage_attention_kernel[grid](
        q_q.to(torch.int8).contiguous(), q_scale.contiguous(), k_q.to(torch.int8).contiguous(), k_scale.contiguous(),
        v_q.to(torch.float8_e4m3fn).contiguous(), v_scale.contiguous(), valid, out,
        heads, q_len, q_q.shape[2], k_q.shape[2], valid.shape[1] if valid.shape[0] > 1 else 0,
        head_dim**-0.5, recipe.p_scale, BLOCK=BLOCK, HEAD_DIM=padded_dim, INTERPRETED=interpreting(),
        num_warps=NUM_WARPS,
    )
    return out[:, :, :q_len, :head_dim].to(q.dtype)


def mma_instructions(arch: int, head_dim: int = 64) -> list[str]:
    """Compile the kernel for sm_<arch>a without a GPU (and without TRITON_INTERPRET=1); the PTX
    lines that issue tensor-core MMAs (int8 QK^T and e4m3 PV)."""
    from pid_kernels.triton import _sass

    if interpreting():
        raise RuntimeError("mma_instructions compiles for a GPU: run it without TRITON_INTERPRET=1")
    spec = next(spec for spec in compile_specs(f"sm_{arch}a") if spec["head_dim"] == head_dim)
    kernel = _sass.compile_spec(spec)
    ptx = kernel.asm["ptx"].splitlines()
    return [line.strip() for line in ptx if "wgmma.mma_async" in line or "tcgen05.mma" in line or "mma.sync" in line]


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as `triton_attention_core` launches it (batch 1) for the
    MM-DiT (d64, 300 caption + Li tokens) and PiT (d72 padded to 128, Li tokens) attention of each real shape."""
    from pid_kernels.triton import _sass

    specs = []
    for shape in _sass.pid_shapes():
        cfg = shape.config
        streams = {"MM-DiT": (cfg["hidden_size"], cfg["num_groups"], cfg["txt_max_length"] + shape.patch_tokens),
                   "PiT": (cfg["pixel_attn_hidden_size"], cfg["pixel_num_groups"], shape.patch_tokens)}
        for stream, (width, heads, tokens) in streams.items():
            head_dim = width // heads
            blocks = triton.cdiv(tokens, BLOCK)
            ints, unit, divisible = _sass.int_arguments(heads=heads, q_len=tokens, q_blocks=blocks, k_blocks=blocks,
                                                        valid_stride=0)
            signature = {"q_ptr": "*i8", "q_scale_ptr": "*fp32", "k_ptr": "*i8", "k_scale_ptr": "*fp32",
                         "v_ptr": "*fp8e4nv", "v_scale_ptr": "*fp32", "valid_ptr": "*i8", "out_ptr": "*fp32",
                         **ints, "sm_scale": "fp32", "p_scale": "fp32"}
            padded = triton.next_power_of_2(max(head_dim, 16))
            specs.append(dict(
                fn=_sage_attention_kernel, signature=signature,
                constexprs=dict(BLOCK=BLOCK, HEAD_DIM=padded, INTERPRETED=False, **unit),
                arch=arch, num_warps=NUM_WARPS, num_stages=3, divisible=divisible,  # num_stages: Triton's default
                variant=f"d{head_dim} int8 QK e4m3 PV", shapes=f"{shape.label} {stream}", head_dim=head_dim,
                mma_operands="e4m3", mma_useful_fraction=head_dim / padded,
            ))
    return _sass.merged(specs)
