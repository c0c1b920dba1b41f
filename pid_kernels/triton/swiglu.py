"""SwiGLU's hidden layer as one GEMM with the activation in its epilogue: the `swiglu` seam in Triton.

silu(x w1^T) * (x w3^T) for x [..., C] and w1, w3 [H, C]: each program walks K once,
loading its x tile once for both products, keeps the two [BLOCK_M, BLOCK_N] float32
accumulators in registers and writes only silu(a) * b, rounded once to the input
dtype. Eager runs two GEMMs, writes and rereads both [M, H] products and runs a
separate elementwise pass (the 403 MB per call of issue 12 at 2048²; not timed here).
float32 operands use exact (ieee) dots, as patch_embed.

Tuning keys (pid_kernels/tuning/<arch>.py, SWIGLU): BLOCK_M, BLOCK_N, BLOCK_K
(halved for float32 operands, twice the shared memory), num_warps, num_stages.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import dtype_reasons, interpreting, tl, triton, triton_device_reasons
from pid_kernels.triton._common import gemm_tile
from pid_kernels.tuning import config

NAME = "swiglu"
reference = seams.swiglu.reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The smallest K of a tl.dot (every dtype but 8-bit).
MIN_DOT_K = 16


@triton.jit
def _swiglu_kernel(
    x_ptr, w1_ptr, w3_ptr, out_ptr, M, N, K, stride_x,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EXACT_DOT: tl.constexpr,
):
    """x [M, K] (row stride stride_x), w1/w3 [N, K] contiguous -> out [M, N] contiguous."""
    rows, cols = gemm_tile(N, BLOCK_M, BLOCK_N)
    # Wrapped indices keep the K loop free of row/column masks; only K's tail and the store mask.
    x_rows = x_ptr + (rows % M).to(tl.int64)[:, None] * stride_x
    w_cols = (cols % N).to(tl.int64)[None, :] * K
    gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        x = tl.load(x_rows + ks[None, :], mask=k_ok[None, :], other=0.0)
        w1 = tl.load(w1_ptr + w_cols + ks[:, None], mask=k_ok[:, None], other=0.0)
        w3 = tl.load(w3_ptr + w_cols + ks[:, None], mask=k_ok[:, None], other=0.0)
        if EXACT_DOT:  # float32 operands must not drop to tf32; the interpreter's bf16 dot is wrong
            x = x.to(tl.float32)
            gate = tl.dot(x, w1.to(tl.float32), gate, input_precision="ieee")
            up = tl.dot(x, w3.to(tl.float32), up, input_precision="ieee")
        else:
            gate = tl.dot(x, w1, gate)
            up = tl.dot(x, w3, up)
    hidden = gate * tl.sigmoid(gate) * up
    out_offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(out_ptr + out_offsets, hidden.to(out_ptr.dtype.element_ty), mask=(rows < M)[:, None] & (cols < N)[None, :])


def _block_k(tuning: dict, dtype: torch.dtype) -> int:
    return max(MIN_DOT_K, tuning["BLOCK_K"] // 2) if dtype == torch.float32 else tuning["BLOCK_K"]


@torch.library.custom_op("pid::swiglu", mutates_args=())
def swiglu(x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
    """Same arguments and result as `pid.seams.swiglu`: x [..., C], w1/w3 [H, C] -> [..., H]."""
    rows = x.reshape(-1, x.shape[-1])
    hidden, width = w1.shape
    out = torch.empty(rows.shape[0], hidden, device=x.device, dtype=x.dtype)
    tuning = config(NAME)
    grid = (triton.cdiv(rows.shape[0], tuning["BLOCK_M"]) * triton.cdiv(hidden, tuning["BLOCK_N"]),)
    _swiglu_kernel[grid](
        rows, w1.contiguous(), w3.contiguous(), out, rows.shape[0], hidden, width, rows.stride(0),
        BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=_block_k(tuning, x.dtype),
        EXACT_DOT=interpreting() or x.dtype == torch.float32,
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"],
    )
    return out.view(*x.shape[:-1], hidden)


@swiglu.register_fake
def _(x, w1, w3):
    return x.new_empty(*x.shape[:-1], w1.shape[0])


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as launched in bf16 (PiD's GPU dtype) with `arch`'s tuning
    table for the MM-DiT MLPs (image tokens and the 300 caption tokens) of every real shape."""
    from pid.model.blocks import SwiGLU
    from pid_kernels.triton import _sass

    tuning = config(NAME, _sass.tuning_arch(arch))
    block_k = _block_k(tuning, torch.bfloat16)
    specs = []
    for shape in _sass.pid_shapes():
        width = shape.config["hidden_size"]
        with torch.device("meta"):
            hidden = SwiGLU(width, 4 * width).w1.weight.shape[0]  # as blocks.MMDiTBlock builds it
        for rows in (shape.patch_tokens, shape.config["txt_max_length"]):
            ints, unit, divisible = _sass.int_arguments(M=rows, N=hidden, K=width, stride_x=width)
            signature = {"x_ptr": "*bf16", "w1_ptr": "*bf16", "w3_ptr": "*bf16", "out_ptr": "*bf16", **ints}
            constexprs = {"BLOCK_M": tuning["BLOCK_M"], "BLOCK_N": tuning["BLOCK_N"], "BLOCK_K": block_k,
                          "EXACT_DOT": False, **unit}
            specs.append(dict(
                fn=_swiglu_kernel, signature=signature, constexprs=constexprs, arch=arch,
                num_warps=tuning["num_warps"], num_stages=tuning["num_stages"], divisible=divisible,
                variant="bf16 M aligned" if rows % 16 == 0 else "bf16 M ragged", shapes=shape.label,
                mma_useful_fraction=width / (triton.cdiv(width, block_k) * block_k),
            ))
    return _sass.merged(specs)


def supports(x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor) -> list[str]:
    """Why the fused kernel refuses these inputs (empty list: it runs them)."""
    reasons = triton_device_reasons(x, w1, w3) + dtype_reasons(DTYPES, x, w1, w3)
    if reasons:
        return reasons
    if len({x.dtype, w1.dtype, w3.dtype}) > 1:
        reasons.append("x, w1 and w3 differ in dtype")
    if len({x.device, w1.device, w3.device}) > 1:
        reasons.append("tensors on different devices")
    if w1.dim() != 2 or w3.shape != w1.shape or x.dim() == 0 or x.shape[-1] != w1.shape[-1]:
        return reasons + [f"x {tuple(x.shape)}, w1 {tuple(w1.shape)}, w3 {tuple(w3.shape)} are not [..., C], [H, C], [H, C]"]
    if x.stride(-1) != 1:
        reasons.append(f"x channels are not contiguous (stride {x.stride(-1)})")
    if x.numel() == 0:
        reasons.append("empty x")
    return reasons


register(KernelOp(NAME, "swiglu", "triton", swiglu, supports))
