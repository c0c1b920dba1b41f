"""Triton fp8 GEMMs: the row-wise scaled product of `pid.quant.fp8.scaled_mm` and its fused epilogues.

Every kernel here computes one [BLOCK_M, BLOCK_N] tile with `_scaled_tile`: e4m3 a_q [M, K]
against e4m3 w_q [N, K], float32 accumulation on the tensor cores, then * a_scale[m] (per token)
* w_scale[n] (per output channel); the kernels differ only in their epilogue, in float32, one
rounding at the store:
  `_fp8_gemm_kernel`        + bias[n]: `scaled_mm(backend="triton")` and the fp8 patch embedding
                            (`pid_kernels/triton/patch_embed_fp8.py`, a_q the quantized patches);
  `_fp8_sigma_gate_kernel`  the sigma gate's: + bias, - exp(log_alpha) * sigma, sigmoid, * lq, + x
                            (`sigma_gate._gate`, the bf16 kernel's own epilogue), a_q = [x, lq]
                            quantized per token (`pid_kernels/triton/sigma_gate_fp8.py`).
Under the Triton interpreter they run on CPU tensors and match the emulation (tests/pid/quant).

Static compile (`compile_specs`: the launches at PiD's shapes, K as the constant the launcher
passes; the static report, benchmarks/STATIC.md), 128 x 64 x 64 tiles, 8 warps, 3 stages, 0 spills:
                       sm_90a (wgmma m64n64k32 e4m3)    sm_100a (tcgen05 kind::f8f6f4)
                       triton 3.9      3.6              3.9      3.6
  bias, K = 768        100 regs        80 regs          170      174 regs
  sigma gate, K = 3072 166 regs        144 regs         170      170 regs
both with cp.async-pipelined loads (36 KiB shared memory). 128 x 128 tiles spilled on sm_100a
(the epilogues read the tcgen05 accumulator back into registers). With K a run-time argument the
compiler cannot prove rows 16-byte aligned: byte loads, no pipelining, 255 registers and spills,
hence the constant. No TMA, no warp specialization. Never run on a GPU.
"""

from __future__ import annotations

import torch

from pid_kernels.runtime import interpreting, tl, triton
from pid_kernels.triton.sigma_gate import _gate, _row_offsets

# One launch configuration, reasoned, not tuned: 128 x 64 tiles (two m64n64k32 wgmma warpgroups,
# one tcgen05 m128n64). At 128 columns the epilogues spill on sm_100a (the accumulator comes back
# from tensor memory into registers): the gate's 232 bytes (triton 3.9), the bias one's 16 (3.6).
BLOCK_M, BLOCK_N, BLOCK_K = 128, 64, 64
NUM_WARPS, NUM_STAGES = 8, 3
# K of the e4m3 operands: a multiple of 16 elements (16-byte rows), for vector loads along K.
K_MULTIPLE = 16
# Bias / output dtypes the kernels read and write (the epilogue works in float32).
_TRITON_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@triton.jit
def _scaled_tile(a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, rows, cols, M, N, K: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """(a_q[rows] @ w_q[cols]^T) * a_scale[rows] * w_scale[cols], float32 [BLOCK_M, BLOCK_N], for
    contiguous a_q [M, K] and w_q [N, K]; rows and columns past M and N hold garbage (the callers
    mask their stores). K is a compile-time constant (PiD has two: 768 and 3072) so the compiler
    knows every row starts 16-byte aligned: vector cp.async loads, a pipelined K loop."""
    # Wrapped indices keep the K loop free of row/column masks (fewer registers); only K's tail masks.
    rows, cols = rows % M, cols % N
    a_rows = a_ptr + rows.to(tl.int64)[:, None] * K
    w_cols = w_ptr + cols.to(tl.int64)[None, :] * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        a = tl.load(a_rows + ks[None, :], mask=k_ok[None, :], other=0.0)
        w = tl.load(w_cols + ks[:, None], mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, w, acc)  # e4m3 x e4m3 -> float32 on the tensor cores
    acc = acc * tl.load(a_scale_ptr + rows)[:, None]
    return acc * tl.load(w_scale_ptr + cols)[None, :]


@triton.jit
def _fp8_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, out_ptr, M, N, stride_out,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    out = _scaled_tile(a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, rows, cols, M, N, K, BLOCK_M, BLOCK_N, BLOCK_K)
    col_ok = cols < N
    if HAS_BIAS:
        out += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_out + cols[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & col_ok[None, :])


@triton.jit
def _fp8_sigma_gate_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, x_ptr, lq_ptr, log_alpha_ptr, sigma_ptr, out_ptr,
    M, tokens, stride_x_batch, stride_x_token, stride_lq_batch, stride_lq_token, stride_sigma,
    C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    logit = _scaled_tile(a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, rows, cols, M, C, 2 * C, BLOCK_M, BLOCK_N, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < C
    tile_ok = row_ok[:, None] & col_ok[None, :]
    # The gate's x and lq tiles in their own dtype (channels contiguous), from the unquantized streams.
    x = tl.load(x_ptr + _row_offsets(rows, tokens, stride_x_batch, stride_x_token)[:, None] + cols[None, :],
                mask=tile_ok, other=0.0)
    lq = tl.load(lq_ptr + _row_offsets(rows, tokens, stride_lq_batch, stride_lq_token)[:, None] + cols[None, :],
                 mask=tile_ok, other=0.0)
    bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    sigma = tl.load(sigma_ptr + (rows // tokens) * stride_sigma, mask=row_ok, other=0.0).to(tl.float32)
    out = _gate(logit + bias[None, :], log_alpha_ptr, sigma[:, None], x.to(tl.float32), lq.to(tl.float32))
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * C + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=tile_ok)


def _check_operands(a_q, w_q) -> None:
    if a_q.dtype != torch.float8_e4m3fn or w_q.dtype != torch.float8_e4m3fn:
        raise ValueError(f"a_q and w_q must be float8_e4m3fn, got {a_q.dtype} and {w_q.dtype}")
    if not (a_q.is_contiguous() and w_q.is_contiguous()):
        raise ValueError("a_q and w_q must be contiguous")
    if a_q.shape[-1] % K_MULTIPLE:
        raise ValueError(f"K = {a_q.shape[-1]} must be a multiple of {K_MULTIPLE} (16-byte e4m3 rows, as "
                         "torch._scaled_mm also requires)")


def _grid(rows: int, cols: int) -> tuple[int, int]:
    return triton.cdiv(rows, BLOCK_M), triton.cdiv(cols, BLOCK_N)


def triton_scaled_mm(a_q, a_scale, w_q, w_scale, bias, out_dtype: torch.dtype) -> torch.Tensor:
    """`pid.quant.fp8.scaled_mm(..., backend="triton")`: same arguments and result."""
    _check_operands(a_q, w_q)
    (M, K), N = a_q.shape, w_q.shape[0]
    out = torch.empty(M, N, dtype=out_dtype, device=a_q.device)
    _fp8_gemm_kernel[_grid(M, N)](
        a_q, a_scale.float().contiguous().view(-1), w_q, w_scale.float().contiguous(),
        bias if bias is not None else out, out, M, N, out.stride(0),
        K=K, HAS_BIAS=bias is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


def triton_sigma_gate(a_q, a_scale, w_q, w_scale, bias, x, lq, log_alpha, sigma) -> torch.Tensor:
    """The per-channel sigma gate from [x, lq] quantized per token: a_q [B*Li, 2C] e4m3, a_scale
    [B*Li, 1], w_q [C, 2C] e4m3, w_scale [C]; x, lq [B, Li, C] (channels contiguous) -> [B, Li, C]."""
    _check_operands(a_q, w_q)
    batch, tokens, width = x.shape
    out = torch.empty(batch, tokens, width, dtype=x.dtype, device=x.device)
    rows = batch * tokens
    _fp8_sigma_gate_kernel[_grid(rows, width)](
        a_q, a_scale.float().contiguous().view(-1), w_q, w_scale.float().contiguous(), bias, x, lq, log_alpha,
        sigma, out, rows, tokens, x.stride(0), x.stride(1), lq.stride(0), lq.stride(1), sigma.stride(0),
        C=width, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


def compile_specs(arch: str) -> list[dict]:
    """The kernels as the fp8 ops launch them at PiD's real shapes (bf16 streams), as
    `pid_kernels.triton._sass.compile_for` keyword arguments plus `variant` and
    `mma_useful_fraction` (the share of MMA work on real rows and columns at a 2048² decode)."""
    fp8, fp32, bf16 = "*fp8e4nv", "*fp32", "*bf16"
    launch = {"arch": arch, "num_warps": NUM_WARPS, "num_stages": NUM_STAGES}
    blocks = {"BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "BLOCK_K": BLOCK_K}
    gemm = {"a_ptr": fp8, "a_scale_ptr": fp32, "w_ptr": fp8, "w_scale_ptr": fp32, "bias_ptr": bf16, "out_ptr": bf16,
            "M": "i32", "N": "i32", "stride_out": "i32"}
    gate = {
        "a_ptr": fp8, "a_scale_ptr": fp32, "w_ptr": fp8, "w_scale_ptr": fp32, "bias_ptr": bf16, "x_ptr": bf16,
        "lq_ptr": bf16, "log_alpha_ptr": bf16, "sigma_ptr": fp32, "out_ptr": bf16,
        **{name: "i32" for name in ("M", "tokens", "stride_x_batch", "stride_x_token", "stride_lq_batch",
                                    "stride_lq_token", "stride_sigma")},
    }
    # 2048² v1: 16384 patch tokens (whole tiles); patch embed K = 768 = 12 K steps, N = C = 1536.
    return [
        {"fn": _fp8_gemm_kernel, "signature": gemm, "constexprs": {"K": 768, "HAS_BIAS": True, **blocks}, **launch,
         "variant": "patch_embed_fp8 bias bf16 (K=768, N=1536)", "mma_useful_fraction": 1.0, "mma_operands": "e4m3",
         "shapes": "v1 2048² patch embed"},
        {"fn": _fp8_sigma_gate_kernel, "signature": gate, "constexprs": {"C": 1536, **blocks}, **launch,
         "variant": "sigma_gate_fp8 per-channel bf16 (K=3072, N=1536)", "mma_useful_fraction": 1.0,
         "mma_operands": "e4m3", "shapes": "v1 2048² sigma gate"},
    ]


def mma_instructions(arch: int) -> list[str]:
    """Compile the bias kernel for sm_<arch>a without a GPU (not under TRITON_INTERPRET=1); the PTX
    lines that issue tensor-core MMAs."""
    from pid_kernels.triton import _sass

    if interpreting():
        raise RuntimeError("mma_instructions compiles for a GPU: run it without TRITON_INTERPRET=1")
    ptx = _sass.compile_spec(compile_specs(f"sm_{arch}a")[0]).asm["ptx"].splitlines()
    return [line.strip() for line in ptx if "wgmma.mma_async" in line or "tcgen05.mma" in line]
