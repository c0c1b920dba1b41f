"""fp8 (e4m3) numerics: row-wise quantization and the scaled matrix product.

Every fp8 product of `pid.quant` is `scaled_mm(a_q, a_scale, w_q, w_scale)`:
a_q [M, K] e4m3 with one float32 scale per row (per token, computed from the
activations at run time), w_q [N, K] e4m3 with one float32 scale per output channel,
accumulated in float32 and scaled in the epilogue: out = (a_q @ w_q^T) * a_scale *
w_scale + bias. On a GPU with fp8 tensor cores this is `torch._scaled_mm` with
row-wise scales; elsewhere the same arithmetic in float32 PyTorch (backend "emulate": the
products of two e4m3 values are exact in float32, so it differs from the hardware only
in summation order). CPU torch also runs `torch._scaled_mm`; the tests check it against
the emulation.
"""

from __future__ import annotations

from typing import Optional

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
# A row of zeros gets this scale instead of 0, so dequantizing it gives zeros, not NaN.
MIN_SCALE = 1e-12
# fp8 tensor cores: Ada (8.9), Hopper (9.0), Blackwell (10.x, 12.x).
FP8_MIN_CAPABILITY = (8, 9)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] (any float dtype) -> (e4m3 [..., K], float32 scale [..., 1]) with
    x ~= q * scale; each row's absolute maximum maps to 448."""
    x32 = x.float()
    scale = (x32.abs().amax(dim=-1, keepdim=True) / E4M3_MAX).clamp_min(MIN_SCALE)
    return (x32 / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """e4m3 values times their scales, in float32 (exact)."""
    return q.float() * scale


def fp8_device_reasons(device: torch.device) -> list[str]:
    """Why fp8 products cannot run on `device` (empty: they can; a CPU runs the emulation)."""
    if device.type == "cpu":
        return []
    if device.type != "cuda":
        return [f"{device.type} device (fp8 products need a CUDA GPU with fp8 tensor cores, or the CPU emulation)"]
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return [
            f"{name} (compute capability {capability[0]}.{capability[1]}) has no fp8 tensor cores; "
            f"fp8 needs {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+ (Ada, Hopper, Blackwell)"
        ]
    return []


BACKENDS = ("torch", "emulate", "triton")


def scaled_mm(
    a_q: torch.Tensor,
    a_scale: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    out_dtype: torch.dtype,
    backend: str = "torch",
) -> torch.Tensor:
    """fp8 GEMM with row-wise scales: a_q [M, K] e4m3, a_scale [M, 1], w_q [N, K] e4m3,
    w_scale [N] -> [M, N] in out_dtype.

    backend "torch": `torch._scaled_mm` (CUDA fp8 tensor cores, or CPU torch's own
    implementation), with w_q^T as the column-major operand cuBLASLt wants and the bias in
    bf16, as its row-wise kernels take it; "emulate": the reference, the same arithmetic in
    float32 PyTorch; "triton": `pid.quant.triton_gemm` (a GPU, or the Triton interpreter).
    """
    if backend == "emulate":
        out = (a_q.float() @ w_q.float().t()) * a_scale * w_scale
        return (out if bias is None else out + bias.float()).to(out_dtype)
    if backend == "triton":
        from pid.quant.triton_gemm import triton_scaled_mm

        return triton_scaled_mm(a_q, a_scale, w_q, w_scale, bias, out_dtype)
    if backend != "torch":
        raise ValueError(f"scaled_mm backend must be one of {BACKENDS}, got {backend!r}")
    # The row-wise kernels take a bf16 bias; other outputs add it afterwards, unrounded.
    bias_in = bias.to(torch.bfloat16) if bias is not None and out_dtype == torch.bfloat16 else None
    out = torch._scaled_mm(
        a_q, w_q.t(), scale_a=a_scale.float(), scale_b=w_scale.float().view(1, -1), bias=bias_in, out_dtype=out_dtype
    )
    if bias is not None and bias_in is None:
        out = (out.float() + bias.float()).to(out_dtype)
    return out
