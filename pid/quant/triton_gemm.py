"""A Triton fp8 GEMM with the row-wise scale and bias epilogue of `pid.quant.fp8.scaled_mm`.

out[m, n] = (sum_k a_q[m, k] w_q[n, k]) * a_scale[m] * w_scale[n] + bias[n], e4m3 operands,
float32 accumulation and epilogue, one rounding at the store. It is the base for fp8 GEMMs with
fused epilogues (sigma gate, patch embed); the plain fp8 linear layers use `torch._scaled_mm`,
so the decode does not call it yet. Under the Triton interpreter it runs on CPU tensors and
matches the emulation (tests/pid/quant); `mma_instructions(arch)` compiles it without a GPU
(in a process without TRITON_INTERPRET=1) and returns the tensor-core instructions of its PTX: wgmma ... e4m3 on sm_90, tcgen05.mma
kind::f8f6f4 on sm_100. Never run on a GPU.
"""

from __future__ import annotations

import torch

from pid_kernels.runtime import interpreting, tl, triton

# One launch configuration, reasoned (a 128x128 tile of a wgmma m64n128k32 pair), not tuned.
BLOCK_M, BLOCK_N, BLOCK_K = 128, 128, 64
NUM_WARPS, NUM_STAGES = 8, 3
# Bias dtypes the kernel reads (the epilogue upcasts to float32).
_TRITON_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@triton.jit
def _fp8_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, out_ptr,
    M, N, K, stride_a, stride_w, stride_out,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + ks) < K
        a = tl.load(a_ptr + rows[:, None].to(tl.int64) * stride_a + (k0 + ks)[None, :],
                    mask=(rows[:, None] < M) & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols[None, :].to(tl.int64) * stride_w + (k0 + ks)[:, None],
                    mask=(cols[None, :] < N) & k_ok[:, None], other=0.0)
        acc = tl.dot(a, w, acc)  # e4m3 x e4m3 -> float32 on the tensor cores
    out = acc * tl.load(a_scale_ptr + rows, mask=rows < M, other=0.0)[:, None]
    out = out * tl.load(w_scale_ptr + cols, mask=cols < N, other=0.0)[None, :]
    if HAS_BIAS:
        out += tl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_out + cols[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def triton_scaled_mm(a_q, a_scale, w_q, w_scale, bias, out_dtype: torch.dtype) -> torch.Tensor:
    """`pid.quant.fp8.scaled_mm(..., backend="triton")`: same arguments and result."""
    if a_q.dtype != torch.float8_e4m3fn or w_q.dtype != torch.float8_e4m3fn:
        raise ValueError(f"a_q and w_q must be float8_e4m3fn, got {a_q.dtype} and {w_q.dtype}")
    if a_q.stride(-1) != 1 or w_q.stride(-1) != 1:
        raise ValueError("a_q and w_q must be contiguous along K")
    (M, K), N = a_q.shape, w_q.shape[0]
    out = torch.empty(M, N, dtype=out_dtype, device=a_q.device)
    grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N))
    _fp8_gemm_kernel[grid](
        a_q, a_scale.float().contiguous().view(-1), w_q, w_scale.float().contiguous(),
        bias if bias is not None else out, out, M, N, K, a_q.stride(0), w_q.stride(0), out.stride(0),
        HAS_BIAS=bias is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


def mma_instructions(arch: int, out_dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """Compile the kernel for sm_<arch> without a GPU; the PTX lines that issue tensor-core MMAs."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {
        "a_ptr": "*fp8e4nv", "a_scale_ptr": "*fp32", "w_ptr": "*fp8e4nv", "w_scale_ptr": "*fp32",
        "bias_ptr": f"*{_TRITON_DTYPES[out_dtype]}", "out_ptr": f"*{_TRITON_DTYPES[out_dtype]}",
        "M": "i32", "N": "i32", "K": "i32", "stride_a": "i32", "stride_w": "i32", "stride_out": "i32",
        "HAS_BIAS": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr",
    }
    constants = {"HAS_BIAS": True, "BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "BLOCK_K": BLOCK_K}
    if interpreting():
        raise RuntimeError("mma_instructions compiles for a GPU: run it without TRITON_INTERPRET=1")
    source = ASTSource(fn=_fp8_gemm_kernel, signature=signature, constexprs=constants)
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": NUM_WARPS, "num_stages": NUM_STAGES})
    ptx = kernel.asm["ptx"].splitlines()
    return [line.strip() for line in ptx if "wgmma.mma_async" in line or "tcgen05.mma" in line]


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as `triton_scaled_mm` launches it for an e4m3 projection
    of the MM-DiT width (C -> C with bias, bf16 out) over the patch tokens of each real shape."""
    from pid_kernels.triton import _sass

    specs = []
    for shape in _sass.pid_shapes():
        width, rows = shape.config["hidden_size"], shape.patch_tokens
        ints, unit, divisible = _sass.int_arguments(M=rows, N=width, K=width, stride_a=width, stride_w=width,
                                                    stride_out=width)
        signature = {"a_ptr": "*fp8e4nv", "a_scale_ptr": "*fp32", "w_ptr": "*fp8e4nv", "w_scale_ptr": "*fp32",
                     "bias_ptr": "*bf16", "out_ptr": "*bf16", **ints}
        specs.append(dict(
            fn=_fp8_gemm_kernel, signature=signature,
            constexprs=dict(HAS_BIAS=True, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, **unit),
            arch=arch, num_warps=NUM_WARPS, num_stages=NUM_STAGES, divisible=divisible,
            variant="e4m3 bias bf16 out", shapes=shape.label, mma_operands="e4m3",
            mma_useful_fraction=width / (triton.cdiv(width, BLOCK_K) * BLOCK_K),
        ))
    return _sass.merged(specs)
