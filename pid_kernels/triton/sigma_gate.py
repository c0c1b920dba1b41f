"""Fused sigma-aware LQ gate: x + sigmoid([x, lq] W^T + b - exp(log_alpha) * sigma) * lq.

Per token and channel (W [C, 2C], v1): one tiled GEMM over M = B*Li rows whose K
loop reads x against W[:, :C] and then lq against W[:, C:] from their own tensors
(no concatenation in memory); bias, the sigma term, sigmoid, the multiply by lq
and the residual run in the epilogue, which loads the x and lq tiles of its
output columns. Per token (W [1, 2C], v1.5): one program per block of whole rows,
a GEMV of each row of [x, lq] with W, then the gate broadcast over C.

The output has x's dtype, as the seam's. Accumulation and epilogue are float32,
so the logit is not rounded to the input dtype as eager's is; the store rounds once.

Tuning keys (pid_kernels/tuning/<arch>.py, SIGMA_GATE): BLOCK_M, BLOCK_N, BLOCK_K,
num_warps, num_stages for the tiled GEMM (BLOCK_K is halved for float32 operands,
which take twice the shared memory); ROW_ELEMENTS (a power of two: x elements one
per-token program holds, rows = ROW_ELEMENTS // next_pow2(C), at least 1) and
per_token_warps for the GEMV.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, tl, triton, triton_device_reasons
from pid_kernels.triton._common import dot, dot_precision, gemm_block_k, gemm_tile
from pid_kernels.tuning import config

reference = seams.sigma_gate.reference

# Widest row the per-token kernel keeps in registers (next power of two of C).
MAX_PER_TOKEN_WIDTH = 16384


@triton.jit
def _row_offsets(rows, tokens, stride_batch, stride_token):
    """Element offsets of rows of a [B, Li, C] view flattened to M = B*Li rows (int64)."""
    rows = rows.to(tl.int64)
    return (rows // tokens) * stride_batch + (rows % tokens) * stride_token


@triton.jit
def _gate(logit, log_alpha_ptr, sigma, x, lq):
    """x + sigmoid(logit - exp(log_alpha) * sigma) * lq, all float32 (logit includes the bias)."""
    alpha = tl.exp(tl.load(log_alpha_ptr).to(tl.float32))
    return x + tl.sigmoid(logit - alpha * sigma) * lq


@triton.jit
def _accumulate(acc, a_ptr, a_rows, a_stride_k, w_cols, w_stride_k, K, BLOCK_K: tl.constexpr,
                DOT_PRECISION: tl.constexpr):
    """acc += A[rows, :K] @ W[cols, :K]^T, with A rows and W columns given as offsets/pointers."""
    ks = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + ks) < K
        a = tl.load(a_ptr + a_rows[:, None] + (k0 + ks)[None, :] * a_stride_k, mask=k_ok[None, :], other=0.0)
        w = tl.load(w_cols[None, :] + (k0 + ks)[:, None] * w_stride_k, mask=k_ok[:, None], other=0.0)
        acc = dot(a, w, acc, DOT_PRECISION)
    return acc


@triton.jit
def _sigma_gate_tiled_kernel(
    x_ptr, lq_ptr, w_ptr, bias_ptr, log_alpha_ptr, sigma_ptr, out_ptr,
    M, tokens, C,
    stride_x_batch, stride_x_token, stride_x_channel,
    stride_lq_batch, stride_lq_token, stride_lq_channel,
    stride_w_out, stride_w_in, stride_sigma,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    rows, cols = gemm_tile(C, BLOCK_M, BLOCK_N)  # W (C x 2C) stays in L2 while the x/lq rows are read once
    # Wrapped indices keep the K loop free of row/column masks; only the store masks.
    x_rows = _row_offsets(rows % M, tokens, stride_x_batch, stride_x_token)
    lq_rows = _row_offsets(rows % M, tokens, stride_lq_batch, stride_lq_token)
    w_cols = w_ptr + (cols % C).to(tl.int64) * stride_w_out

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = _accumulate(acc, x_ptr, x_rows, stride_x_channel, w_cols, stride_w_in, C, BLOCK_K, DOT_PRECISION)
    acc = _accumulate(acc, lq_ptr, lq_rows, stride_lq_channel, w_cols + C * stride_w_in, stride_w_in, C,
                      BLOCK_K, DOT_PRECISION)

    row_ok = rows < M
    col_ok = cols < C
    tile_ok = row_ok[:, None] & col_ok[None, :]
    bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    sigma = tl.load(sigma_ptr + (rows // tokens) * stride_sigma, mask=row_ok, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + x_rows[:, None] + cols[None, :] * stride_x_channel, mask=tile_ok, other=0.0)
    lq = tl.load(lq_ptr + lq_rows[:, None] + cols[None, :] * stride_lq_channel, mask=tile_ok, other=0.0)
    out = _gate(acc + bias[None, :], log_alpha_ptr, sigma[:, None], x.to(tl.float32), lq.to(tl.float32))
    out_offsets = rows.to(tl.int64)[:, None] * C + cols[None, :]
    tl.store(out_ptr + out_offsets, out, mask=tile_ok)


@triton.jit
def _sigma_gate_per_token_kernel(
    x_ptr, lq_ptr, w_ptr, bias_ptr, log_alpha_ptr, sigma_ptr, out_ptr,
    M, tokens, C,
    stride_x_batch, stride_x_token, stride_x_channel,
    stride_lq_batch, stride_lq_token, stride_lq_channel,
    stride_w_in, stride_sigma,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    row_ok = rows < M
    col_ok = cols < C
    tile_ok = row_ok[:, None] & col_ok[None, :]
    x_rows = _row_offsets(rows, tokens, stride_x_batch, stride_x_token)
    lq_rows = _row_offsets(rows, tokens, stride_lq_batch, stride_lq_token)
    # Whole rows stay in registers: one read of x and lq serves the dot and the gate.
    x = tl.load(x_ptr + x_rows[:, None] + cols[None, :] * stride_x_channel, mask=tile_ok, other=0.0).to(tl.float32)
    lq = tl.load(lq_ptr + lq_rows[:, None] + cols[None, :] * stride_lq_channel, mask=tile_ok, other=0.0).to(
        tl.float32
    )
    w_x = tl.load(w_ptr + cols * stride_w_in, mask=col_ok, other=0.0).to(tl.float32)
    w_lq = tl.load(w_ptr + (C + cols) * stride_w_in, mask=col_ok, other=0.0).to(tl.float32)
    logit = tl.sum(x * w_x[None, :] + lq * w_lq[None, :], axis=1) + tl.load(bias_ptr).to(tl.float32)
    sigma = tl.load(sigma_ptr + (rows // tokens) * stride_sigma, mask=row_ok, other=0.0).to(tl.float32)
    out = _gate(logit[:, None], log_alpha_ptr, sigma[:, None], x, lq)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * C + cols[None, :], out, mask=tile_ok)


def _launch(x, lq, weight, bias, log_alpha, sigma) -> torch.Tensor:
    batch, tokens, width = x.shape
    rows = batch * tokens
    out = torch.empty(batch, tokens, width, device=x.device, dtype=x.dtype)
    tuning = config("sigma_gate")
    common = (x, lq, weight, bias, log_alpha, sigma, out, rows, tokens, width, *x.stride(), *lq.stride())
    if weight.shape[0] == 1:
        block_c = triton.next_power_of_2(width)
        block_m = max(1, tuning["ROW_ELEMENTS"] // block_c)
        _sigma_gate_per_token_kernel[(triton.cdiv(rows, block_m),)](
            *common, weight.stride(1), sigma.stride(0),
            BLOCK_M=block_m, BLOCK_C=block_c, num_warps=tuning["per_token_warps"],
        )
        return out
    grid = (triton.cdiv(rows, tuning["BLOCK_M"]) * triton.cdiv(width, tuning["BLOCK_N"]),)
    _sigma_gate_tiled_kernel[grid](
        *common, *weight.stride(), sigma.stride(0),
        BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=gemm_block_k(tuning, x.dtype),
        DOT_PRECISION=dot_precision(x.dtype),
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"],
    )
    return out


@torch.library.custom_op("pid::sigma_gate", mutates_args=())
def sigma_gate(
    x: torch.Tensor,
    lq: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    log_alpha: torch.Tensor,
    sigma: torch.Tensor,
) -> torch.Tensor:
    """The fused gate; same arguments and output as `pid.seams.sigma_gate`."""
    return _launch(x, lq, weight, bias, log_alpha, sigma)


@sigma_gate.register_fake
def _sigma_gate_fake(x, lq, weight, bias, log_alpha, sigma):
    return torch.empty_like(x)


def epilogue_reasons(log_alpha: torch.Tensor, sigma: torch.Tensor, batch: int) -> list[str]:
    """Why the gate epilogue's scalars do not fit (shared with the fp8 gate, sigma_gate_fp8)."""
    reasons = []
    if log_alpha.numel() != 1:
        reasons.append(f"log_alpha has {log_alpha.numel()} elements, expected 1")
    if tuple(sigma.shape) != (batch,):
        reasons.append(f"sigma {tuple(sigma.shape)} is not [B] = [{batch}]")
    return reasons


def supports(x, lq, weight, bias, log_alpha, sigma) -> list[str]:
    reasons = triton_device_reasons(x, lq, weight, bias, log_alpha, sigma)
    reasons += dtype_reasons(FLOAT_DTYPES, x, lq, weight, bias, log_alpha, sigma)
    if bias is None:
        return reasons + ["no bias (the gate's projection always has one)"]
    if len({t.device for t in (x, lq, weight, bias, log_alpha, sigma)}) > 1:
        reasons.append("tensors on different devices")
    if len({x.dtype, lq.dtype, weight.dtype, bias.dtype}) > 1:
        reasons.append("x, lq, weight and bias differ in dtype")
    if x.dim() != 3 or lq.shape != x.shape:
        return reasons + [f"x {tuple(x.shape)} and lq {tuple(lq.shape)} must be the same [B, Li, C]"]
    batch, tokens, width = x.shape
    if x.numel() == 0:
        reasons.append("empty x")
    if tuple(weight.shape) not in ((width, 2 * width), (1, 2 * width)):
        reasons.append(f"weight {tuple(weight.shape)} is neither [C, 2C] nor [1, 2C] for C={width}")
    elif tuple(bias.shape) != (weight.shape[0],):
        reasons.append(f"bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
    if weight.shape[0] == 1 and triton.next_power_of_2(width) > MAX_PER_TOKEN_WIDTH:
        reasons.append(f"per-token gate wider than {MAX_PER_TOKEN_WIDTH} channels")
    return reasons + epilogue_reasons(log_alpha, sigma, batch)


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the gate of each real shape in bf16 as `_launch` launches it on `arch`:
    v1's per-token-per-dim gate (the tiled GEMM), v1.5's per-token one (the GEMV); x, lq [1, Li, C]."""
    from pid_kernels.triton import _sass

    tuning = config("sigma_gate", _sass.tuning_arch(arch))
    specs = []
    for shape in _sass.pid_shapes():
        width, rows = shape.config["hidden_size"], shape.patch_tokens
        strides = dict(stride_x_batch=rows * width, stride_x_token=width, stride_x_channel=1,
                       stride_lq_batch=rows * width, stride_lq_token=width, stride_lq_channel=1)
        pointers = {name: "*bf16" for name in _sigma_gate_tiled_kernel.arg_names[:7]}
        if shape.config["lq_gate_type"] == "sigma_aware_per_token":
            block_c = triton.next_power_of_2(width)
            ints, unit, divisible = _sass.int_arguments(M=rows, tokens=rows, C=width, **strides, stride_w_in=1,
                                                        stride_sigma=1)
            specs.append(dict(
                fn=_sigma_gate_per_token_kernel, signature={**pointers, **ints},
                constexprs=dict(BLOCK_M=max(1, tuning["ROW_ELEMENTS"] // block_c), BLOCK_C=block_c, **unit),
                arch=arch, num_warps=tuning["per_token_warps"], num_stages=3, divisible=divisible,
                variant="bf16 per token", shapes=shape.label,
            ))
            continue
        block_k = gemm_block_k(tuning, torch.bfloat16)
        ints, unit, divisible = _sass.int_arguments(M=rows, tokens=rows, C=width, **strides, stride_w_out=2 * width,
                                                    stride_w_in=1, stride_sigma=1)
        specs.append(dict(
            fn=_sigma_gate_tiled_kernel, signature={**pointers, **ints},
            constexprs=dict(BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=block_k,
                            DOT_PRECISION=dot_precision(torch.bfloat16), **unit),
            arch=arch, num_warps=tuning["num_warps"], num_stages=tuning["num_stages"], divisible=divisible,
            variant="bf16 per token and channel", shapes=shape.label,
            mma_useful_fraction=width / (triton.cdiv(width, block_k) * block_k),
        ))
    return _sass.merged(specs)


register(KernelOp("sigma_gate", "sigma_gate", "triton", sigma_gate, supports))
