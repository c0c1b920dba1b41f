"""The per-channel sigma gate with its GEMM in fp8 (v1's W [C, 2C], pid.quant's e4m3 weights).

Serves seam `sigma_gate_fp8`: [x, lq] is quantized per token (`pid.quant.fp8.quantize_rows`, PyTorch
ops: no producer kernel writes it yet), then one Triton fp8 GEMM whose epilogue is the bf16 gate
kernel's (`pid.quant.triton_gemm._fp8_sigma_gate_kernel`): row-wise x per-channel scales, bias,
the sigma term, sigmoid, * lq, + x, from the unquantized x and lq tiles. The logit stays float32
(eager's is rounded to x's dtype), one rounding at the store. The per-token gate (v1.5, W [1, 2C])
is a GEMV with no tensor-core work for fp8 to speed up: refused. Needs compute capability 8.9+.
"""

from __future__ import annotations

import torch

from pid import seams
from pid.quant.fp8 import quantize_rows
from pid.quant import triton_gemm  # a module: it imports pid_kernels, which imports this
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, triton_device_reasons
from pid_kernels.triton.rmsnorm_modulate_fp8 import FP8_CAPABILITY
from pid_kernels.triton.sigma_gate import epilogue_reasons

reference = seams.sigma_gate_fp8.reference


@torch.library.custom_op("pid::sigma_gate_fp8", mutates_args=())
def sigma_gate_fp8(
    x: torch.Tensor, lq: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
    log_alpha: torch.Tensor, sigma: torch.Tensor,
) -> torch.Tensor:
    """Same arguments and output as `pid.seams.sigma_gate_fp8`."""
    values, scales = quantize_rows(torch.cat([x, lq], dim=-1).view(-1, 2 * x.shape[-1]))
    return triton_gemm.triton_sigma_gate(values, scales, weight, weight_scale, bias, x, lq, log_alpha, sigma)


@sigma_gate_fp8.register_fake
def _sigma_gate_fp8_fake(x, lq, weight, weight_scale, bias, log_alpha, sigma):
    return torch.empty_like(x)


def supports(x, lq, weight, weight_scale, bias, log_alpha, sigma) -> list[str]:
    tensors = (x, lq, weight, weight_scale, bias, log_alpha, sigma)
    reasons = triton_device_reasons(*tensors) + dtype_reasons(FLOAT_DTYPES, x, lq, bias, log_alpha, sigma)
    if len({t.device for t in tensors}) > 1:
        reasons.append("tensors on different devices")
    if weight.dtype != torch.float8_e4m3fn or weight_scale.dtype != torch.float32:
        reasons.append(f"weight {weight.dtype} / weight_scale {weight_scale.dtype} are not float8_e4m3fn / float32")
    if x.dim() != 3 or lq.shape != x.shape or lq.dtype != x.dtype:
        return reasons + [f"x {tuple(x.shape)} and lq {tuple(lq.shape)} must be the same [B, Li, C] of one dtype"]
    batch, _, width = x.shape
    if x.numel() == 0:
        reasons.append("empty x")
    if x.stride(-1) != 1 or lq.stride(-1) != 1:
        reasons.append("x and lq must be contiguous over channels")
    if tuple(weight.shape) == (1, 2 * width):
        reasons.append("per-token gate [1, 2C]: a GEMV, nothing for fp8 tensor cores to speed up")
    elif tuple(weight.shape) != (width, 2 * width) or weight.stride(-1) != 1:
        reasons.append(f"weight {tuple(weight.shape)} is not a contiguous [C, 2C] for C={width}")
    if (2 * width) % triton_gemm.K_MULTIPLE:
        reasons.append(f"K = 2C = {2 * width} is not a multiple of {triton_gemm.K_MULTIPLE} (16-byte e4m3 rows)")
    if tuple(weight_scale.shape) != (weight.shape[0],) or tuple(bias.shape) != (weight.shape[0],):
        reasons.append(f"weight_scale {tuple(weight_scale.shape)} / bias {tuple(bias.shape)} do not match weight")
    return reasons + epilogue_reasons(log_alpha, sigma, batch)


register(KernelOp("sigma_gate_fp8", "sigma_gate_fp8", "triton", sigma_gate_fp8, supports, capability=FP8_CAPABILITY))
