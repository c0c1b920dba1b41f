"""Fused QK-RMSNorm + RoPE + joint attention: the `attention` seam in Triton.

Two kernels read q, k, v straight from the fused qkv projections [B, L, 3*H*D]
(q, k, v of head h at channels (0H+h)D, (1H+h)D, (2H+h)D) of up to two streams,
text first then image, through two pointers: no split, no transpose, no torch.cat.
Every q and k row is RMS-normalised (float32 statistics), scaled by its stream's
weight and rotated (RoPE on adjacent channel pairs: the pair partner is the same
row loaded at channel d ^ 1, so the rotation is elementwise) inside our kernels.

Pipelined kernel (`_pipelined_attention_kernel`; bf16/fp16 whenever the sequence
has more than FUSED_K_MAX_Q_TILES query tiles and D * element size is a multiple
of 16, i.e. every PiD attention at real sizes). A pre-pass (`_prepare_qkv_kernel`)
writes the normed, rotated q and k and a copy of v, joint text-then-image, to
[B, H, Lt+Li, D] scratch (at 16684 tokens x 1536 channels, 154 MB written and
read once more: ~0.09 ms at 3.35 TB/s against ~2.9 ms for the attention at 600
TFLOP/s, ~3%; estimated, not timed); the attention then reads them by TMA
(on-device tensor descriptors) in one `tl.range` loop over the joint keys (warp-
specialized where the table says so), with caption-mask / ragged-end biases read
by TMA too (Triton's Hopper warp specialization takes no pointer loads, no second
loop and no tail step). Head dim 72 runs as dots of 64 + 16 channels (TMA
zero-fills channels 72..79): 90% useful MMA work instead of 56% padded to 128
(40: 32 + 16, 83%). DEFER_PV (sm_90a): step j issues S = QK^T of key block j and
waits for it, then issues P.V of block j-1 (probabilities and rescale carried
from step j-1; one extra step at the end), then runs block j's softmax, which
does not read that P.V, so ptxas sinks its wait below the exp2 work and the wgmma
runs under the softmax of the same warpgroup (FA3's intent, reached another way).
Compiled without a GPU (pid_kernels/triton/_sass.py; 128x128 tiles; Triton 3.6
and 3.9; bf16 and fp16, masked and unmasked keys alike unless noted):
  * sm_90a: DEFER_PV, no warp specialization, 8 warps (two 64-row warpgroups; TMA
    loads prefetched by the loop pipeliner, 2 stages), wgmma + TMA, no spills, one
    CTA per SM; SASS: the P.V HGMMAs interleave with MUFU.EX2 before their
    WARPGROUP.DEPBAR (`softmax_overlap` "wait_pending"). d64: P carried in float32
    (the wgmma reads it from registers), 195-213 registers, 82 KB smem. d72: P
    carried in 16 bits through 32 KB of smem (float32 with the tail dot: 233
    registers, serialized HGMMAs), 139-176 registers, 135 KB; the 16-channel P.V
    first, since ptxas sinks only the last wgmma's wait.
    What did not get there: Triton makes a wgmma asynchronous only when its result
    feeds a later dot's accumulator or is read after a wait 0 in the loop, and puts
    a wait with groups pending (wait N > 0) in a loop only when no dot in it has a
    wait 0 (WGMMAPipeline.cpp in both versions), so no PTX wait N > 0 is reachable
    around a softmax; S for block j+1 issued before block j's softmax (S carried)
    gets wait 0 after it and ptxas serializes every HGMMA (the in-flight
    accumulator is copied at the back edge); any carried S or P with
    warp_specialize=True crashes NVGPUWarpSpecialization (an assertion, 3.6 and
    3.9); loop_unroll_factor=2 (a d64 test kernel): the same overlap, 171 registers, 180 KB.
    The previous schedule (autoWS: producer + two consumer warpgroups, 12 warps,
    168 registers, 99 / 120 KB) waits for each wgmma before its softmax.
  * sm_100a: tcgen05 issued from its own partition, the softmax in others; 12
    warps (16 for d72 on 3.6), 168 registers (128), no spills, 84 / 106 KB smem,
    one CTA per SM, TMA. DEFER_PV there: 504-664 B of spills, so not taken.
  * sm_120: no warp specialization, mma.sync, 64-key steps; 148-171 registers,
    no spills on 3.9 (3.6: 160-169, 8 B spilled), 32 / 40 KiB of the 99 KiB smem.
None of this is timed: no device run yet.

Pointer kernel (`_attention_kernel`; float32, short sequences, unaligned head
dims): query tiles never straddle the streams (text tiles come first in the
grid), and each program walks the text keys, then the image keys. Keys are normed
either in the key loop (`fused` k prologue: one launch, no scratch; for at most
FUSED_K_MAX_Q_TILES query tiles, since it recomputes the prologue per query tile
and its extra loads rule out multi-stage pipelining) or by the pre-pass. Head dim
72 is padded to BLOCK_D=128 in registers, never in memory. float32 inputs use
three-pass tf32 dots on smaller tiles (FLOAT32_TILE_CAPS).

Both: softmax scale * log2(e) folded into one FMA with the running max, exp2,
float32 accumulation; the grid's fastest axis is the query tile, so the programs
of one head run together and share its k/v in L2.

Tuning keys (pid_kernels/tuning/<arch>.py): ATTENTION (head_dim <= 64) and
ATTENTION_D128 (64 < head_dim <= 128) for the pointer kernel: BLOCK_M, BLOCK_N,
num_warps, num_stages, FUSED_K_MAX_Q_TILES (fuse the key prologue when there are at
most this many query tiles per head; it also decides pipelined vs pointer).
ATTENTION_PIPELINED: BLOCK_M, BLOCK_N, num_warps, num_stages, WARP_SPECIALIZE, DEFER_PV
(1: issue each P.V one key block later, under the next block's softmax), SOFTMAX_OVERLAP
(the overlap kind this schedule compiles to: the static report's gate holds it).
ATTENTION_DISPATCH: ours or SDPA per head-dim class and length (`dispatch`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, interpreting, tl, triton, triton_device_reasons
from pid_kernels.triton._common import DOT_NATIVE, DOT_TF32X3, dot, dot_precision
from pid_kernels.tuning import config

NAME = "attention"
reference = seams.attention.reference

MAX_HEAD_DIM = 128
# Rows per program of the key pre-pass: memory-bound, small tiles keep many programs in flight.
K_PROLOGUE_ROWS = 64
LOG2_E = 1.4426950408889634
# float32's three-pass tf32 dot holds split operands in registers and smem: smaller tiles, one stage.
# Compiled (benchmarks/STATIC.md, Triton 3.6 / 3.9): d64 without spills on sm_90a only; d72 (padded to 128)
# spills 800 / 744 B on sm_90a, 968 / 920 B on sm_100a (allowed in pid/bench/static.py: --dtype fp32 only).
FLOAT32_TILE_CAPS = {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}


if triton is not None:

    @triton.jit
    def _rotated_channels(
        head_ptr, rows, row_ok, stride_l, weight_ptr, cos_ptr, sin_ptr, channels,
        HAS_ROPE: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):
        """(rope(weight * x), sum of x^2) in float32 over `channels` of rows x of one head; head_ptr at channel 0."""
        channel_ok = channels < HEAD_DIM
        mask = row_ok[:, None] & channel_ok[None, :]
        row_offsets = rows[:, None] * stride_l
        x = tl.load(head_ptr + row_offsets + channels[None, :], mask=mask, other=0.0).to(tl.float32)
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
        return y, tl.sum(x * x, 1)

    @triton.jit
    def _normed_rotated_rows(
        head_ptr, rows, row_ok, stride_l, weight_ptr, cos_ptr, sin_ptr, eps,
        HAS_ROPE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """rope(weight * rms_norm(x)) in float32 for rows x of one head; head_ptr points at channel 0."""
        y, sum_sq = _rotated_channels(
            head_ptr, rows, row_ok, stride_l, weight_ptr, cos_ptr, sin_ptr, tl.arange(0, BLOCK_D), HAS_ROPE, HEAD_DIM,
        )
        return y * tl.rsqrt(sum_sq / HEAD_DIM + eps)[:, None]

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
    def _prepare_qkv_kernel(
        img_qkv, img_k_weight, img_q_weight, img_cos, img_sin, img_len, img_stride_b, img_stride_l,
        txt_qkv, txt_k_weight, txt_q_weight, txt_cos, txt_sin, txt_len, txt_stride_b, txt_stride_l,
        prepared_k, prepared_v, prepared_q, num_heads, eps,
        IMG_ROPE: tl.constexpr, TXT_ROPE: tl.constexpr, PREPARE_QV: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """Normed, rotated keys of both streams -> prepared_k [B, H, Lt + Li, D], text first. With
        PREPARE_QV (grid axis 2 of size 2), also their values copied to prepared_v and (axis 2 = 1) the
        normed, rotated queries to prepared_q, all of that shape."""
        tile = tl.program_id(0)
        batch_head = tl.program_id(1)
        is_query = tl.program_id(2) == 1
        batch = (batch_head // num_heads).to(tl.int64)
        column = (batch_head % num_heads) * HEAD_DIM + tl.where(is_query, 0, num_heads * HEAD_DIM)
        text_tiles = tl.cdiv(txt_len, BLOCK_ROWS)
        if tile < text_tiles:
            rows = tile * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
            row_ok = rows < txt_len
            head_ptr = txt_qkv + batch * txt_stride_b + column
            weight = txt_q_weight if is_query else txt_k_weight
            x = _normed_rotated_rows(
                head_ptr, rows, row_ok, txt_stride_l, weight, txt_cos, txt_sin, eps, TXT_ROPE, HEAD_DIM, BLOCK_D,
            )
            stride_l = txt_stride_l
            joint_rows = rows
        else:
            rows = (tile - text_tiles) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
            row_ok = rows < img_len
            head_ptr = img_qkv + batch * img_stride_b + column
            weight = img_q_weight if is_query else img_k_weight
            x = _normed_rotated_rows(
                head_ptr, rows, row_ok, img_stride_l, weight, img_cos, img_sin, eps, IMG_ROPE, HEAD_DIM, BLOCK_D,
            )
            stride_l = img_stride_l
            joint_rows = txt_len + rows
        channels = tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (channels < HEAD_DIM)[None, :]
        offsets = batch_head.to(tl.int64) * (txt_len + img_len) * HEAD_DIM + joint_rows[:, None] * HEAD_DIM
        offsets += channels[None, :]
        if is_query:
            tl.store(prepared_q + offsets, x.to(prepared_q.dtype.element_ty), mask=mask)
        else:
            tl.store(prepared_k + offsets, x.to(prepared_k.dtype.element_ty), mask=mask)
            if PREPARE_QV:
                v_rows = head_ptr + num_heads * HEAD_DIM + rows[:, None] * stride_l
                tl.store(prepared_v + offsets, tl.load(v_rows + channels[None, :], mask=mask), mask=mask)

    @triton.jit
    def _head_descriptor(head_ptr, rows, HEAD_DIM: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr):
        """TMA descriptor of one head's [rows, HEAD_DIM] buffer, in [BLOCK_ROWS, BLOCK_CHANNELS] boxes."""
        return tl.make_tensor_descriptor(head_ptr, [rows, HEAD_DIM], [HEAD_DIM, 1], [BLOCK_ROWS, BLOCK_CHANNELS])

    @triton.jit
    def _accumulate_values(
        acc, acc_tail, probs, rescale, v_desc, v_tail_desc, key_start,
        D_MAIN: tl.constexpr, D_TAIL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        """(acc, acc_tail) rescaled plus probs . V of the key block at key_start, split D_MAIN + D_TAIL."""
        # The wider dot last: ptxas lets only the last MMA before the softmax run under its exp2 work.
        if D_TAIL > 0:
            acc_tail = dot(probs, v_tail_desc.load([key_start, D_MAIN]), acc_tail * rescale[:, None], DOT_PRECISION)
        acc = dot(probs, v_desc.load([key_start, 0]), acc * rescale[:, None], DOT_PRECISION)
        return acc, acc_tail

    @triton.jit
    def _pipelined_attention_kernel(
        img_out, txt_out, img_len, txt_len, key_bias, prepared_q, prepared_k, prepared_v, num_heads, qk_scale,
        MASK_KEYS: tl.constexpr,
        HEAD_DIM: tl.constexpr, D_MAIN: tl.constexpr, D_TAIL: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NUM_STAGES: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
        DEFER_PV: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        """Flash attention over prepared (normed, rotated) queries and keys and copied values
        [B, H, Lt + Li, D], text first, all read by TMA, in one warp-specialized loop over the joint keys;
        the head dim runs as D_MAIN + D_TAIL channels (72 = 64 + 16; TMA zero-fills channels past
        HEAD_DIM). MASK_KEYS: add key_bias [B, joint keys padded to BLOCK_N] (0 or -inf: padded caption
        tokens, keys past the end), read by TMA too (Hopper's warp specialization takes no pointer loads in
        the loop). Grid (joint query tiles, B * H); rows go to out_txt [B, Lt, H*D] or out_img [B, Li, H*D]."""
        tile = tl.program_id(0)
        batch_head = tl.program_id(1)
        batch = (batch_head // num_heads).to(tl.int64)
        head = batch_head % num_heads
        joint_len = txt_len + img_len
        head_offset = batch_head.to(tl.int64) * joint_len * HEAD_DIM
        q_desc = _head_descriptor(prepared_q + head_offset, joint_len, HEAD_DIM, BLOCK_M, D_MAIN)
        k_desc = _head_descriptor(prepared_k + head_offset, joint_len, HEAD_DIM, BLOCK_N, D_MAIN)
        v_desc = _head_descriptor(prepared_v + head_offset, joint_len, HEAD_DIM, BLOCK_N, D_MAIN)
        q = q_desc.load([tile * BLOCK_M, 0])
        q_tail = tl.zeros([BLOCK_M, 16], q.dtype)
        k_tail_desc = k_desc
        v_tail_desc = v_desc
        if D_TAIL > 0:
            q_tail = _head_descriptor(prepared_q + head_offset, joint_len, HEAD_DIM, BLOCK_M, D_TAIL).load(
                [tile * BLOCK_M, D_MAIN]
            )
            k_tail_desc = _head_descriptor(prepared_k + head_offset, joint_len, HEAD_DIM, BLOCK_N, D_TAIL)
            v_tail_desc = _head_descriptor(prepared_v + head_offset, joint_len, HEAD_DIM, BLOCK_N, D_TAIL)
        bias_desc = k_desc
        if MASK_KEYS:
            padded_len = tl.cdiv(joint_len, BLOCK_N) * BLOCK_N
            bias_desc = tl.make_tensor_descriptor(key_bias + batch * padded_len, [padded_len], [1], [BLOCK_N])

        # A finite start keeps exp2(row_max - new_max) defined while every key so far is masked.
        row_max = tl.full([BLOCK_M], -1.0e30, tl.float32)
        row_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D_MAIN], tl.float32)
        acc_tail = tl.zeros(q_tail.shape, tl.float32)
        # DEFER_PV carries the previous key block's probabilities: in float32 they stay in registers (the
        # wgmma reads P from registers); carried in 16 bits they go through 32 KB of shared memory, which
        # the head-dim tail needs (float32 with its second dot: 233 registers, ptxas serializes the wgmmas).
        carried_probs = tl.float32 if D_TAIL == 0 else q.dtype
        if DEFER_PV:
            # The previous key block's probabilities and rescale; none before block 0.
            probs = tl.zeros([BLOCK_M, BLOCK_N], carried_probs)
            rescale = tl.full([BLOCK_M], 1.0, tl.float32)
        # One loop and nothing after it: Triton's Hopper warp specialization takes no second loop or tail
        # step; DEFER_PV adds one step past the last key block for that block's P.V.
        for key_start in tl.range(0, joint_len + DEFER_PV * BLOCK_N, BLOCK_N, num_stages=NUM_STAGES,
                                  warp_specialize=WARP_SPECIALIZE):
            scores = dot(q, tl.trans(k_desc.load([key_start, 0])), None, DOT_PRECISION)
            if D_TAIL > 0:
                scores += dot(q_tail, tl.trans(k_tail_desc.load([key_start, D_MAIN])), None, DOT_PRECISION)
            if MASK_KEYS:
                scores += bias_desc.load([key_start])[None, :]
            if DEFER_PV:
                # The previous block's P.V, issued before this block's softmax, which does not wait for it.
                # Block 0 multiplies its zero probabilities by block 0's values (no negative TMA coordinate).
                previous_start = tl.maximum(key_start - BLOCK_N, 0)
                acc, acc_tail = _accumulate_values(
                    acc, acc_tail, probs.to(q.dtype), rescale, v_desc, v_tail_desc, previous_start,
                    D_MAIN, D_TAIL, DOT_PRECISION,
                )
                # The step past the last block: -inf keeps row_max (rescale 1) and adds no probability.
                past_end = tl.where(key_start < joint_len, 0.0, float("-inf"))
                new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale + past_end)
                shift = new_max - past_end
            else:
                new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale)
                shift = new_max
            probs = tl.math.exp2(scores * qk_scale - shift[:, None])
            rescale = tl.math.exp2(row_max - new_max)
            row_sum = row_sum * rescale + tl.sum(probs, 1)
            if DEFER_PV:
                probs = probs.to(carried_probs)
            else:
                acc, acc_tail = _accumulate_values(
                    acc, acc_tail, probs.to(q.dtype), rescale, v_desc, v_tail_desc, key_start,
                    D_MAIN, D_TAIL, DOT_PRECISION,
                )
            row_max = new_max

        # Joint rows [0, Lt) are text, the rest image: two masked stores, one per stream.
        width = num_heads * HEAD_DIM
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        txt_rows = rows[:, None] * width + head * HEAD_DIM + batch * txt_len * width
        img_rows = (rows - txt_len)[:, None] * width + head * HEAD_DIM + batch * img_len * width
        is_text = (rows < txt_len)[:, None]
        is_image = ((rows >= txt_len) & (rows < joint_len))[:, None]
        channels = tl.arange(0, D_MAIN)[None, :]
        out = (acc / row_sum[:, None]).to(img_out.dtype.element_ty)
        tl.store(txt_out + txt_rows + channels, out, mask=is_text & (channels < HEAD_DIM))
        tl.store(img_out + img_rows + channels, out, mask=is_image & (channels < HEAD_DIM))
        if D_TAIL > 0:
            channels = D_MAIN + tl.arange(0, D_TAIL)[None, :]
            out = (acc_tail / row_sum[:, None]).to(img_out.dtype.element_ty)
            tl.store(txt_out + txt_rows + channels, out, mask=is_text & (channels < HEAD_DIM))
            tl.store(img_out + img_rows + channels, out, mask=is_image & (channels < HEAD_DIM))

def head_split(head_dim: int) -> tuple[int, int]:
    """(D_MAIN, D_TAIL): the head dim as a power-of-two dot plus a 16-wide one (0: none), e.g. 72 -> (64, 16),
    40 -> (32, 16), 64 -> (64, 0); one power-of-two dot where the split saves nothing (100 -> (128, 0))."""
    padded = max(16, triton.next_power_of_2(head_dim))
    main = max(16, padded // 2 if padded > head_dim else padded)
    rest = head_dim - main
    tail = 0 if rest <= 0 else max(16, triton.next_power_of_2(rest))
    return (padded, 0) if main + tail >= padded else (main, tail)


def mma_useful_fraction(head_dim: int, pipelined: bool) -> float:
    """Useful over issued MMA work of both dots (QK^T's reduction and PV's width both run over the padded
    head dim): the pipelined kernel splits the head dim (head_split), the other pads it to a power of two."""
    issued = sum(head_split(head_dim)) if pipelined else max(16, triton.next_power_of_2(head_dim))
    return head_dim / issued


def _tuning(head_dim: int, dtype: torch.dtype, arch: Optional[str] = None) -> dict:
    tuning = config("attention" if head_dim <= 64 else "attention_d128", arch)
    if dtype == torch.float32:
        tuning = {key: min(value, FLOAT32_TILE_CAPS.get(key, value)) for key, value in tuning.items()}
    return tuning


# ATTENTION_DISPATCH's entry per (head-dim class, longer than LONG_TOKENS).
DISPATCH_ENTRIES = {(64, False): "d64_short", (64, True): "d64_long", (128, False): "d128_short", (128, True): "d128_long"}


def dispatch(head_dim: int, joint_tokens: int, arch: Optional[str] = None) -> dict:
    """The tuning table's choice for this shape: {"backend": "ours" or "sdpa", "entry", "measured"}."""
    table = config("attention_dispatch", arch)
    entry = DISPATCH_ENTRIES[(64 if head_dim <= 64 else 128, joint_tokens > table["LONG_TOKENS"])]
    return {"backend": table[entry], "entry": entry, "measured": table["measured"]}


def pipelined_launch(head_dim: int, arch: Optional[str] = None) -> tuple[dict, dict]:
    """(constexprs, launch options) of _pipelined_attention_kernel from the arch's tuning table."""
    tuning = config("attention_pipelined", arch)
    d_main, d_tail = head_split(head_dim)
    constexprs = dict(D_MAIN=d_main, D_TAIL=d_tail, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"],
                      NUM_STAGES=tuning["num_stages"], WARP_SPECIALIZE=bool(tuning["WARP_SPECIALIZE"]),
                      DEFER_PV=bool(tuning["DEFER_PV"]))
    return constexprs, dict(num_warps=tuning["num_warps"], num_stages=tuning["num_stages"])


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs of every kernel the launcher launches at the real shapes on `arch`
    ("sm_90a", "sm_100a", "sm_120"): the MM-DiT attention (d64, 300 caption tokens with their key mask,
    text RoPE) and the PiT attention (d72, image only) of each shape, in bf16 (the pre-pass and the
    pipelined kernel) and float32 (the pre-pass and the pointer kernel on prepared keys)."""
    from pid_kernels.triton import _sass

    table = _sass.tuning_arch(arch)
    specs = []
    for shape in _sass.pid_shapes():
        cfg = shape.config
        streams = {"MM-DiT": (cfg["hidden_size"], cfg["num_groups"], cfg["txt_max_length"], cfg["use_text_rope"]),
                   "PiT": (cfg["pixel_attn_hidden_size"], cfg["pixel_num_groups"], 0, False)}
        for stream, (width, heads, txt_len, txt_rope) in streams.items():
            for dtype in (torch.bfloat16, torch.float32):
                specs += _launched_specs(arch, table, f"{shape.label} {stream}", width // heads, 3 * width, txt_len,
                                         shape.patch_tokens, txt_rope, dtype)
    return _sass.merged(specs)


def _launched_specs(arch, table, shapes, head_dim, qkv_width, txt_len, img_len, txt_rope, dtype) -> list[dict]:
    """The launches of _fused_attention for one attention call, as compile specs (see compile_specs)."""
    from pid_kernels.triton import _sass

    element = {torch.bfloat16: "*bf16", torch.float32: "*fp32"}[dtype]
    name = {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    tuning = _tuning(head_dim, dtype, table)
    block_d = max(16, triton.next_power_of_2(head_dim))
    query_tiles = triton.cdiv(txt_len, tuning["BLOCK_M"]) + triton.cdiv(img_len, tuning["BLOCK_M"])
    k_prepared = query_tiles > tuning["FUSED_K_MAX_Q_TILES"]
    pipelined = k_prepared and dtype != torch.float32 and head_dim * dtype.itemsize % 16 == 0
    has_mask = txt_len > 0
    # qkv [B, L, 3 * H * D] (B = 1: the batch strides are never read, as in a launch of B = 1).
    ints, _, divisible = _sass.int_arguments(img_len=img_len, txt_len=txt_len, img_stride_b=img_len * qkv_width,
                                             img_stride_l=qkv_width, txt_stride_b=txt_len * qkv_width,
                                             txt_stride_l=qkv_width, num_heads=qkv_width // (3 * head_dim))
    info = dict(arch=arch, shapes=shapes, head_dim=head_dim)
    specs = []
    if k_prepared:
        scalars = {**ints, "eps": "fp32"}
        names = _prepare_qkv_kernel.arg_names[:21]
        specs.append(dict(
            fn=_prepare_qkv_kernel, signature={arg: scalars.get(arg, element) for arg in names},
            constexprs=dict(IMG_ROPE=True, TXT_ROPE=txt_rope, PREPARE_QV=pipelined, HEAD_DIM=head_dim,
                            BLOCK_ROWS=K_PROLOGUE_ROWS, BLOCK_D=block_d),
            num_warps=4, num_stages=3,  # Triton's defaults: the launch sets neither
            divisible=divisible,
            variant=f"d{head_dim} {name} {'q k v' if pipelined else 'k'}", **info,
        ))
    if pipelined:
        constexprs, launch = pipelined_launch(head_dim, table)
        mask_keys = has_mask or (txt_len + img_len) % constexprs["BLOCK_N"] != 0
        scalars = {**ints, "qk_scale": "fp32", "key_bias": "*fp32"}
        signature = {arg: scalars.get(arg, element) for arg in _pipelined_attention_kernel.arg_names[:10]}
        constexprs = {**constexprs, "MASK_KEYS": mask_keys, "HEAD_DIM": head_dim,
                      "DOT_PRECISION": dot_precision(dtype)}
        specs.append(dict(
            fn=_pipelined_attention_kernel, signature=signature, constexprs=constexprs, **launch,
            divisible=tuple(name for name in divisible if name in signature),
            variant=f"d{head_dim} {name}{' masked' if mask_keys else ''}",
            mma_useful_fraction=mma_useful_fraction(head_dim, pipelined=True),
            softmax_overlap=config("attention_pipelined", table)["SOFTMAX_OVERLAP"], **info,
        ))
        return specs
    scalars = {**ints, "eps": "fp32", "qk_scale": "fp32", "txt_keep": "*u8"}
    signature = {arg: scalars.get(arg, element) for arg in _attention_kernel.arg_names[:23]}
    constexprs = dict(IMG_ROPE=True, TXT_ROPE=txt_rope, HAS_KEY_MASK=has_mask, K_PREPARED=k_prepared,
                      HEAD_DIM=head_dim, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_D=block_d,
                      DOT_PRECISION=dot_precision(dtype, float32=DOT_TF32X3))
    specs.append(dict(
        fn=_attention_kernel, signature=signature, constexprs=constexprs,
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"] if k_prepared else 1,
        divisible=divisible,
        variant=f"d{head_dim} {name}{' masked' if has_mask else ''}{'' if k_prepared else ' fused k'}",
        mma_useful_fraction=mma_useful_fraction(head_dim, pipelined=False), **info,
    ))
    return specs


def _key_bias(txt_key_mask: Optional[torch.Tensor], batch: int, joint_len: int, block_n: int, device) -> torch.Tensor:
    """[B, joint_len rounded up to block_n] float32: -inf for padded caption tokens and keys past the end, else 0."""
    bias = torch.zeros(batch, triton.cdiv(joint_len, block_n) * block_n, device=device, dtype=torch.float32)
    bias[:, joint_len:] = float("-inf")
    if txt_key_mask is not None:
        bias[:, : txt_key_mask.shape[1]].masked_fill_(~txt_key_mask, float("-inf"))
    return bias


def _tma_scratch(size: int, alignment: int, stream) -> torch.Tensor:
    """Global memory for the kernel's on-device TMA descriptors (triton.set_allocator)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


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
    flags = dict(IMG_ROPE=img_cos is not None, TXT_ROPE=has_text and txt_cos is not None,
                 HAS_KEY_MASK=txt_key_mask is not None, HEAD_DIM=head_dim)

    tuning = _tuning(head_dim, qkv_img.dtype)
    block_d = max(16, triton.next_power_of_2(head_dim))
    query_tiles = triton.cdiv(txt_len, tuning["BLOCK_M"]) + triton.cdiv(img_len, tuning["BLOCK_M"])
    k_prepared = query_tiles > tuning["FUSED_K_MAX_Q_TILES"]
    prepared_k = qkv_img.new_empty(batch, num_heads, txt_len + img_len, head_dim) if k_prepared else out_img
    # TMA needs 16-byte rows: head_dim * element size a multiple of 16 (float32 keeps its tf32x3 path).
    pipelined = k_prepared and qkv_img.dtype != torch.float32 and head_dim * qkv_img.element_size() % 16 == 0
    prepared_v, prepared_q = (torch.empty_like(prepared_k), torch.empty_like(prepared_k)) if pipelined else (
        prepared_k, prepared_k)
    img_args = (qkv_img, img_q_weight.contiguous(), img_k_weight.contiguous(), *img_rope)
    txt_args = (txt, txt_q_weight.contiguous(), txt_k_weight.contiguous(), *txt_rope)
    if k_prepared:
        grid = (triton.cdiv(txt_len, K_PROLOGUE_ROWS) + triton.cdiv(img_len, K_PROLOGUE_ROWS), batch * num_heads,
                2 if pipelined else 1)
        _prepare_qkv_kernel[grid](
            qkv_img, img_args[2], img_args[1], *img_rope, img_len, qkv_img.stride(0), qkv_img.stride(1),
            txt, txt_args[2], txt_args[1], *txt_rope, txt_len, txt.stride(0), txt.stride(1),
            prepared_k, prepared_v, prepared_q, num_heads, seams.RMS_EPS,
            IMG_ROPE=flags["IMG_ROPE"], TXT_ROPE=flags["TXT_ROPE"], PREPARE_QV=pipelined,
            HEAD_DIM=head_dim, BLOCK_ROWS=K_PROLOGUE_ROWS, BLOCK_D=block_d,
        )
    if pipelined:
        constexprs, launch = pipelined_launch(head_dim)
        if not interpreting():
            triton.set_allocator(_tma_scratch)
        joint_len = txt_len + img_len
        mask_keys = txt_key_mask is not None or joint_len % constexprs["BLOCK_N"] != 0
        key_bias = out_img  # unread without MASK_KEYS
        if mask_keys:
            key_bias = _key_bias(txt_key_mask, batch, joint_len, constexprs["BLOCK_N"], qkv_img.device)
        grid = (triton.cdiv(joint_len, constexprs["BLOCK_M"]), batch * num_heads)
        _pipelined_attention_kernel[grid](
            out_img, out_txt, img_len, txt_len, key_bias, prepared_q, prepared_k, prepared_v, num_heads,
            LOG2_E / math.sqrt(head_dim), MASK_KEYS=mask_keys, HEAD_DIM=head_dim, DOT_PRECISION=dot_precision(qkv_img.dtype),
            **constexprs, num_warps=launch["num_warps"],
        )
        return out_img, out_txt
    grid = (query_tiles, batch * num_heads)
    _attention_kernel[grid](
        *img_args, out_img, img_len, qkv_img.stride(0), qkv_img.stride(1),
        *txt_args, out_txt, txt_len, txt.stride(0), txt.stride(1),
        keep, prepared_k, num_heads, seams.RMS_EPS, LOG2_E / math.sqrt(head_dim),
        **flags, K_PREPARED=k_prepared, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_D=block_d,
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
    text_tokens = qkv_txt.shape[1] if qkv_txt is not None and qkv_txt.dim() == 3 else 0
    choice = dispatch(head_dim, qkv_img.shape[1] + text_tokens)
    if choice["backend"] != "ours":
        reasons.append(f"ATTENTION_DISPATCH[{choice['entry']!r}] picks {choice['backend']} (measured: {choice['measured']})")
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
