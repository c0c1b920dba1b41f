"""Fused QK-RMSNorm + RoPE + joint attention: the `attention` seam in Triton.

One flash-attention forward reads q, k, v straight from the fused qkv projections
[B, L, 3*H*D] (q, k, v of head h at channels (0H+h)D, (1H+h)D, (2H+h)D) of up to
two streams, text first then image, through two pointers: no split, no
transpose, no torch.cat. Query tiles never straddle the streams (text tiles come
first in the grid), and each program walks the text keys, then the image keys.

Prologue. Each query tile is RMS-normalised (float32 statistics), scaled by its
stream's weight and rotated (RoPE on adjacent channel pairs: the pair partner is
the same row loaded at channel d ^ 1, so the rotation is elementwise) once per
program. Keys get the same treatment, either
  * in the key loop (`fused` k prologue: one launch, no scratch), or
  * in a small pre-pass that writes the normed, rotated keys once to a scratch
    [B, H, Lt+Li, D] buffer (`prepared` k); the key loop is then a plain
    flash-attention loop (sm90 SASS: as many instructions per step as a minimal
    Triton flash attention, no spills).
Fusing recomputes the key prologue for every query tile and doubles the loop's
instructions (sm90 SASS, Triton 3.9); its extra loads also rule out multi-stage
pipelining. The pre-pass costs one launch and 4 bytes per key channel, ~1% of an
attention at 16684 tokens (estimated). So the tuning table's FUSED_K_MAX_Q_TILES picks
fusion only for sequences of one or two query tiles.

Tiling for H100 at head dim 64 (target >= 400 TFLOP/s and >= 95% of the best
SDPA backend; not yet measured): BLOCK_M=128 query rows over 8 warps (two
warpgroups of 64 rows, each issuing wgmma with q in registers), BLOCK_N=128 keys
per step, three cp.async stages for k/v (plain pointer loads feeding tl.dot are
pipelined through shared memory; 112 KB, two programs per SM), no register
spills; softmax scale * log2(e) folded into one FMA with the running max, exp2,
float32 accumulation; the grid's fastest axis is the query tile, so the programs
of one head run together and share its k/v in L2. Head dim 72 (PiT) is padded
to BLOCK_D=128 in registers, never in memory. float32 inputs use three-pass tf32
dots on smaller tiles (FLOAT32_TILE_CAPS).

Tuning keys (pid_kernels/tuning/<arch>.py, ATTENTION for head_dim <= 64 and
ATTENTION_D128 for 64 < head_dim <= 128): BLOCK_M, BLOCK_N, num_warps,
num_stages, FUSED_K_MAX_Q_TILES (fuse the key prologue when there are at most
this many query tiles per head).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, tl, triton, triton_device_reasons
from pid_kernels.triton._common import DOT_TF32X3, dot, dot_precision
from pid_kernels.tuning import config

NAME = "attention"
reference = seams.attention.reference

MAX_HEAD_DIM = 128
# Rows per program of the key pre-pass: memory-bound, small tiles keep many programs in flight.
K_PROLOGUE_ROWS = 64
LOG2_E = 1.4426950408889634
# float32's three-pass tf32 dot holds split operands in registers and smem: smaller tiles, one stage
# (ptxas, Triton 3.9: no spills in the sm90 loop, and within sm120's 99 KB of smem).
FLOAT32_TILE_CAPS = {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}


if triton is not None:

    @triton.jit
    def _normed_rotated_rows(
        head_ptr, rows, row_ok, stride_l, weight_ptr, cos_ptr, sin_ptr, eps,
        HAS_ROPE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """rope(weight * rms_norm(x)) in float32 for rows x of one head; head_ptr points at channel 0."""
        channels = tl.arange(0, BLOCK_D)
        channel_ok = channels < HEAD_DIM
        mask = row_ok[:, None] & channel_ok[None, :]
        row_offsets = rows[:, None] * stride_l
        x = tl.load(head_ptr + row_offsets + channels[None, :], mask=mask, other=0.0).to(tl.float32)
        inv_rms = tl.rsqrt(tl.sum(x * x, 1) / HEAD_DIM + eps)
        y = x * tl.load(weight_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_ROPE:
            # Channel d pairs with d ^ 1: even d gets x*cos - partner*sin, odd d x*cos + partner*sin.
            partners = channels ^ 1
            x_partner = tl.load(head_ptr + row_offsets + partners[None, :], mask=mask, other=0.0).to(tl.float32)
            w_partner = tl.load(weight_ptr + partners, mask=channel_ok, other=0.0).to(tl.float32)
            angle_offsets = rows[:, None] * (HEAD_DIM // 2) + (channels // 2)[None, :]
            cos = tl.load(cos_ptr + angle_offsets, mask=mask, other=0.0).to(tl.float32)
            sin = tl.load(sin_ptr + angle_offsets, mask=mask, other=0.0).to(tl.float32)
            signed_sin = tl.where((channels % 2 == 0)[None, :], -sin, sin)
            y = y * cos + (x_partner * w_partner[None, :]) * signed_sin
        return y * inv_rms[:, None]

    @triton.jit
    def _attend_tile(
        acc, row_max, row_sum, q, qk_scale, key_start, key_len,
        qkv_ptr, stride_l, k_weight, cos_ptr, sin_ptr, prepared_k_ptr, keep_ptr, num_heads, head, eps,
        MASK_TAIL: tl.constexpr, HAS_KEY_MASK: tl.constexpr, HAS_ROPE: tl.constexpr, K_PREPARED: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
    ):
        """One online-softmax step over keys [key_start, key_start + BLOCK_N) of one stream."""
        keys = key_start + tl.arange(0, BLOCK_N)
        channels = tl.arange(0, BLOCK_D)
        if MASK_TAIL:
            key_ok = keys < key_len
        else:
            key_ok = keys >= 0
        kv_mask = key_ok[:, None] & (channels < HEAD_DIM)[None, :]
        if K_PREPARED:
            k = tl.load(prepared_k_ptr + keys[:, None] * HEAD_DIM + channels[None, :], mask=kv_mask, other=0.0)
        else:
            k = _normed_rotated_rows(
                qkv_ptr + (num_heads + head) * HEAD_DIM, keys, key_ok, stride_l, k_weight, cos_ptr, sin_ptr, eps,
                HAS_ROPE, HEAD_DIM, BLOCK_D,
            ).to(q.dtype)
        v_ptrs = qkv_ptr + (2 * num_heads + head) * HEAD_DIM + keys[:, None] * stride_l + channels[None, :]
        v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        scores = dot(q, tl.trans(k), None, DOT_PRECISION)
        if MASK_TAIL:
            scores = tl.where(key_ok[None, :], scores, float("-inf"))
        if HAS_KEY_MASK:
            keep = tl.load(keep_ptr + keys, mask=key_ok, other=0) != 0
            scores = tl.where(keep[None, :], scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale)
        probs = tl.math.exp2(scores * qk_scale - new_max[:, None])
        rescale = tl.math.exp2(row_max - new_max)
        row_sum = row_sum * rescale + tl.sum(probs, 1)
        acc = acc * rescale[:, None] + dot(probs.to(v.dtype), v, None, DOT_PRECISION)
        return acc, new_max, row_sum

    @triton.jit
    def _attend_stream(
        acc, row_max, row_sum, q, qk_scale, key_len,
        qkv_ptr, stride_l, k_weight, cos_ptr, sin_ptr, prepared_k_ptr, keep_ptr, num_heads, head, eps,
        HAS_KEY_MASK: tl.constexpr, HAS_ROPE: tl.constexpr, K_PREPARED: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
    ):
        """All keys of one stream: full tiles without bounds checks, then the ragged tail."""
        full_end = (key_len // BLOCK_N) * BLOCK_N
        for key_start in range(0, full_end, BLOCK_N):
            acc, row_max, row_sum = _attend_tile(
                acc, row_max, row_sum, q, qk_scale, key_start, key_len,
                qkv_ptr, stride_l, k_weight, cos_ptr, sin_ptr, prepared_k_ptr, keep_ptr, num_heads, head,
                eps, False, HAS_KEY_MASK, HAS_ROPE, K_PREPARED, HEAD_DIM, BLOCK_N, BLOCK_D, DOT_PRECISION,
            )
        if full_end < key_len:
            acc, row_max, row_sum = _attend_tile(
                acc, row_max, row_sum, q, qk_scale, full_end, key_len,
                qkv_ptr, stride_l, k_weight, cos_ptr, sin_ptr, prepared_k_ptr, keep_ptr, num_heads, head,
                eps, True, HAS_KEY_MASK, HAS_ROPE, K_PREPARED, HEAD_DIM, BLOCK_N, BLOCK_D, DOT_PRECISION,
            )
        return acc, row_max, row_sum

    @triton.jit
    def _attention_kernel(
        img_qkv, img_q_weight, img_k_weight, img_cos, img_sin, img_out, img_len, img_stride_b, img_stride_l,
        txt_qkv, txt_q_weight, txt_k_weight, txt_cos, txt_sin, txt_out, txt_len, txt_stride_b, txt_stride_l,
        txt_keep, prepared_k, num_heads, eps, qk_scale,
        IMG_ROPE: tl.constexpr, TXT_ROPE: tl.constexpr, HAS_KEY_MASK: tl.constexpr, K_PREPARED: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
    ):
        """Grid (text query tiles + image query tiles, B * H); outputs [B, L, H*D] per stream."""
        tile = tl.program_id(0)
        batch_head = tl.program_id(1)
        batch = (batch_head // num_heads).to(tl.int64)
        head = batch_head % num_heads
        txt_qkv += batch * txt_stride_b
        img_qkv += batch * img_stride_b
        prepared_k += batch_head.to(tl.int64) * (txt_len + img_len) * HEAD_DIM
        txt_keep += batch * txt_len
        text_tiles = tl.cdiv(txt_len, BLOCK_M)

        is_text_tile = tile < text_tiles
        if is_text_tile:
            rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
            row_ok = rows < txt_len
            q = _normed_rotated_rows(
                txt_qkv + head * HEAD_DIM, rows, row_ok, txt_stride_l, txt_q_weight, txt_cos, txt_sin, eps,
                TXT_ROPE, HEAD_DIM, BLOCK_D,
            )
        else:
            rows = (tile - text_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
            row_ok = rows < img_len
            q = _normed_rotated_rows(
                img_qkv + head * HEAD_DIM, rows, row_ok, img_stride_l, img_q_weight, img_cos, img_sin, eps,
                IMG_ROPE, HEAD_DIM, BLOCK_D,
            )
        q = q.to(img_qkv.dtype.element_ty)

        # A finite start keeps exp2(row_max - new_max) defined while every key so far is masked.
        row_max = tl.full([BLOCK_M], -1.0e30, tl.float32)
        row_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        acc, row_max, row_sum = _attend_stream(
            acc, row_max, row_sum, q, qk_scale, txt_len,
            txt_qkv, txt_stride_l, txt_k_weight, txt_cos, txt_sin, prepared_k, txt_keep, num_heads, head, eps,
            HAS_KEY_MASK, TXT_ROPE, K_PREPARED, HEAD_DIM, BLOCK_N, BLOCK_D, DOT_PRECISION,
        )
        acc, row_max, row_sum = _attend_stream(
            acc, row_max, row_sum, q, qk_scale, img_len,
            img_qkv, img_stride_l, img_k_weight, img_cos, img_sin, prepared_k + txt_len * HEAD_DIM, txt_keep,
            num_heads, head, eps, False, IMG_ROPE, K_PREPARED, HEAD_DIM, BLOCK_N, BLOCK_D, DOT_PRECISION,
        )
        out = acc / row_sum[:, None]

        channels = tl.arange(0, BLOCK_D)
        width = num_heads * HEAD_DIM
        out_offsets = rows[:, None] * width + head * HEAD_DIM + channels[None, :]
        out_mask = row_ok[:, None] & (channels < HEAD_DIM)[None, :]
        if is_text_tile:
            tl.store(txt_out + batch * txt_len * width + out_offsets, out.to(txt_out.dtype.element_ty), mask=out_mask)
        else:
            tl.store(img_out + batch * img_len * width + out_offsets, out.to(img_out.dtype.element_ty), mask=out_mask)

    @triton.jit
    def _prepare_k_kernel(
        img_qkv, img_k_weight, img_cos, img_sin, img_len, img_stride_b, img_stride_l,
        txt_qkv, txt_k_weight, txt_cos, txt_sin, txt_len, txt_stride_b, txt_stride_l,
        prepared_k, num_heads, eps,
        IMG_ROPE: tl.constexpr, TXT_ROPE: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """Normed, rotated keys of both streams -> prepared_k [B, H, Lt + Li, D], text first."""
        tile = tl.program_id(0)
        batch_head = tl.program_id(1)
        batch = (batch_head // num_heads).to(tl.int64)
        k_column = (num_heads + batch_head % num_heads) * HEAD_DIM
        text_tiles = tl.cdiv(txt_len, BLOCK_ROWS)
        if tile < text_tiles:
            rows = tile * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
            row_ok = rows < txt_len
            k = _normed_rotated_rows(
                txt_qkv + batch * txt_stride_b + k_column, rows, row_ok, txt_stride_l, txt_k_weight,
                txt_cos, txt_sin, eps, TXT_ROPE, HEAD_DIM, BLOCK_D,
            )
            joint_rows = rows
        else:
            rows = (tile - text_tiles) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
            row_ok = rows < img_len
            k = _normed_rotated_rows(
                img_qkv + batch * img_stride_b + k_column, rows, row_ok, img_stride_l, img_k_weight,
                img_cos, img_sin, eps, IMG_ROPE, HEAD_DIM, BLOCK_D,
            )
            joint_rows = txt_len + rows
        channels = tl.arange(0, BLOCK_D)
        prepared_k += batch_head.to(tl.int64) * (txt_len + img_len) * HEAD_DIM
        tl.store(
            prepared_k + joint_rows[:, None] * HEAD_DIM + channels[None, :],
            k.to(prepared_k.dtype.element_ty),
            mask=row_ok[:, None] & (channels < HEAD_DIM)[None, :],
        )


def _tuning(head_dim: int, dtype: torch.dtype) -> dict:
    tuning = config("attention" if head_dim <= 64 else "attention_d128")
    if dtype == torch.float32:
        tuning = {key: min(value, FLOAT32_TILE_CAPS.get(key, value)) for key, value in tuning.items()}
    return tuning


@torch.library.custom_op("pid::attention", mutates_args=())
def _fused_attention(
    qkv_img: torch.Tensor,
    img_q_weight: torch.Tensor,
    img_k_weight: torch.Tensor,
    img_cos: Optional[torch.Tensor],
    img_sin: Optional[torch.Tensor],
    num_heads: int,
    qkv_txt: Optional[torch.Tensor],
    txt_q_weight: Optional[torch.Tensor],
    txt_k_weight: Optional[torch.Tensor],
    txt_cos: Optional[torch.Tensor],
    txt_sin: Optional[torch.Tensor],
    txt_key_mask: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out_img [B, Li, C], out_txt [B, Lt, C]); out_txt is [B, 0, C] without a text stream."""
    batch, img_len, three_width = qkv_img.shape
    width = three_width // 3
    head_dim = width // num_heads
    has_text = qkv_txt is not None
    txt_len = qkv_txt.shape[1] if has_text else 0
    out_img = qkv_img.new_empty(batch, img_len, width)
    out_txt = qkv_img.new_empty(batch, txt_len, width)
    # Without a text stream its pointers alias the image stream's; txt_len = 0 keeps them unread.
    txt = qkv_txt if has_text else qkv_img
    txt_q_weight = txt_q_weight if has_text else img_q_weight
    txt_k_weight = txt_k_weight if has_text else img_k_weight
    img_rope = (img_cos.contiguous(), img_sin.contiguous()) if img_cos is not None else (img_q_weight, img_q_weight)
    txt_rope = (txt_cos.contiguous(), txt_sin.contiguous()) if has_text and txt_cos is not None else img_rope
    keep = txt_key_mask.contiguous().view(torch.uint8) if txt_key_mask is not None else out_img

    tuning = _tuning(head_dim, qkv_img.dtype)
    block_d = max(16, triton.next_power_of_2(head_dim))
    query_tiles = triton.cdiv(txt_len, tuning["BLOCK_M"]) + triton.cdiv(img_len, tuning["BLOCK_M"])
    k_prepared = query_tiles > tuning["FUSED_K_MAX_Q_TILES"]
    prepared_k = qkv_img.new_empty(batch, num_heads, txt_len + img_len, head_dim) if k_prepared else out_img
    img_args = (qkv_img, img_q_weight.contiguous(), img_k_weight.contiguous(), *img_rope)
    txt_args = (txt, txt_q_weight.contiguous(), txt_k_weight.contiguous(), *txt_rope)
    if k_prepared:
        grid = (triton.cdiv(txt_len, K_PROLOGUE_ROWS) + triton.cdiv(img_len, K_PROLOGUE_ROWS), batch * num_heads)
        _prepare_k_kernel[grid](
            *img_args[:1], *img_args[2:], img_len, qkv_img.stride(0), qkv_img.stride(1),
            *txt_args[:1], *txt_args[2:], txt_len, txt.stride(0), txt.stride(1),
            prepared_k, num_heads, seams.RMS_EPS,
            IMG_ROPE=img_cos is not None, TXT_ROPE=has_text and txt_cos is not None,
            HEAD_DIM=head_dim, BLOCK_ROWS=K_PROLOGUE_ROWS, BLOCK_D=block_d,
        )
    grid = (query_tiles, batch * num_heads)
    _attention_kernel[grid](
        *img_args, out_img, img_len, qkv_img.stride(0), qkv_img.stride(1),
        *txt_args, out_txt, txt_len, txt.stride(0), txt.stride(1),
        keep, prepared_k, num_heads, seams.RMS_EPS, LOG2_E / math.sqrt(head_dim),
        IMG_ROPE=img_cos is not None, TXT_ROPE=has_text and txt_cos is not None,
        HAS_KEY_MASK=txt_key_mask is not None, K_PREPARED=k_prepared, HEAD_DIM=head_dim,
        BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_D=block_d,
        # float32: plain tf32 would cost ~1e-3 relative error; three tf32 passes stay near float32.
        DOT_PRECISION=dot_precision(qkv_img.dtype, float32=DOT_TF32X3),
        # Pipelining the in-loop key prologue's four loads (k, its pair partners, cos, sin) would need
        # ~4x the stage buffers (over 227 KB on sm90); it runs only on short sequences anyway.
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"] if k_prepared else 1,
    )
    return out_img, out_txt


@_fused_attention.register_fake
def _(qkv_img, img_q_weight, img_k_weight, img_cos, img_sin, num_heads, qkv_txt, txt_q_weight, txt_k_weight,
      txt_cos, txt_sin, txt_key_mask):
    batch, img_len, three_width = qkv_img.shape
    txt_len = qkv_txt.shape[1] if qkv_txt is not None else 0
    return (qkv_img.new_empty(batch, img_len, three_width // 3), qkv_img.new_empty(batch, txt_len, three_width // 3))


def attention(
    qkv_img: torch.Tensor,
    img_qk_norm: tuple[torch.Tensor, torch.Tensor],
    img_rope: Optional[tuple[torch.Tensor, torch.Tensor]],
    num_heads: int,
    qkv_txt: Optional[torch.Tensor] = None,
    txt_qk_norm: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    txt_rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    txt_key_mask: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The seam's signature and result, computed by the fused kernel (see `reference`)."""
    img_cos, img_sin = img_rope if img_rope is not None else (None, None)
    txt_q_weight, txt_k_weight = txt_qk_norm if txt_qk_norm is not None else (None, None)
    txt_cos, txt_sin = txt_rope if txt_rope is not None else (None, None)
    out_img, out_txt = torch.ops.pid.attention(
        qkv_img, *img_qk_norm, img_cos, img_sin, num_heads,
        qkv_txt, txt_q_weight, txt_k_weight, txt_cos, txt_sin, txt_key_mask,
    )
    return out_img, (out_txt if qkv_txt is not None else None)


def _stream_reasons(stream: str, qkv, qk_norm, rope, head_dim) -> list[str]:
    reasons = []
    if qk_norm is None:
        return [f"{stream}: qkv given without q/k norm weights"]
    allowed = (torch.float32, qkv.dtype)
    for name, weight in zip(("q norm weight", "k norm weight"), qk_norm):
        if tuple(weight.shape) != (head_dim,):
            reasons.append(f"{stream}: {name} shape {tuple(weight.shape)}, expected ({head_dim},)")
        elif weight.dtype not in allowed:
            reasons.append(f"{stream}: {name} dtype {weight.dtype} (float32 or the qkv dtype)")
    if rope is not None:
        for name, table in zip(("rope cos", "rope sin"), rope):
            if tuple(table.shape) != (qkv.shape[1], head_dim // 2):
                reasons.append(
                    f"{stream}: {name} shape {tuple(table.shape)}, expected ({qkv.shape[1]}, {head_dim // 2})"
                )
            elif table.dtype not in allowed:
                reasons.append(f"{stream}: {name} dtype {table.dtype} (float32 or the qkv dtype)")
    if qkv.stride(-1) != 1:
        reasons.append(f"{stream}: qkv channels are not contiguous (stride {qkv.stride(-1)})")
    return reasons


def supports(
    qkv_img, img_qk_norm, img_rope, num_heads, qkv_txt=None, txt_qk_norm=None, txt_rope=None, txt_key_mask=None
) -> list[str]:
    """Why the fused kernel refuses these inputs (empty list: it runs them)."""
    tensors = [qkv_img, *img_qk_norm, *(img_rope or ()), qkv_txt, *(txt_qk_norm or ()), *(txt_rope or ()), txt_key_mask]
    reasons = triton_device_reasons(*tensors) + dtype_reasons(FLOAT_DTYPES, qkv_img, qkv_txt)
    if len({t.device for t in tensors if t is not None}) > 1:
        reasons.append("tensors on different devices")
    if reasons:
        return reasons
    if num_heads < 1 or qkv_img.dim() != 3 or qkv_img.shape[-1] % (3 * num_heads) or qkv_img.shape[-1] == 0:
        return [f"qkv_img shape {tuple(qkv_img.shape)} is not [B, L, 3 * {num_heads} heads * D]"]
    head_dim = qkv_img.shape[-1] // (3 * num_heads)
    if head_dim > MAX_HEAD_DIM or head_dim % 2:
        reasons.append(f"head dim {head_dim} (supported: even, <= {MAX_HEAD_DIM})")
    if qkv_img.shape[1] == 0:
        reasons.append("no image tokens")
    reasons += _stream_reasons("image", qkv_img, img_qk_norm, img_rope, head_dim)
    if qkv_txt is None:
        if txt_key_mask is not None:
            reasons.append("txt_key_mask without a text stream")
        return reasons
    if qkv_txt.dim() != 3 or qkv_txt.shape[0] != qkv_img.shape[0] or qkv_txt.shape[2] != qkv_img.shape[2]:
        return reasons + [f"qkv_txt shape {tuple(qkv_txt.shape)} does not match qkv_img {tuple(qkv_img.shape)}"]
    if qkv_txt.dtype != qkv_img.dtype:
        reasons.append(f"qkv_txt dtype {qkv_txt.dtype} != qkv_img dtype {qkv_img.dtype}")
    reasons += _stream_reasons("text", qkv_txt, txt_qk_norm, txt_rope, head_dim)
    if txt_key_mask is not None and (
        txt_key_mask.dtype != torch.bool or tuple(txt_key_mask.shape) != tuple(qkv_txt.shape[:2])
    ):
        reasons.append(
            f"txt_key_mask {txt_key_mask.dtype} {tuple(txt_key_mask.shape)}, expected bool {tuple(qkv_txt.shape[:2])}"
        )
    return reasons


register(KernelOp(NAME, "attention", "triton", attention, supports))
