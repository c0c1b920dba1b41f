"""adaLN producing an fp8 GEMM's input: rmsnorm_modulate quantized per token in the same pass.

Serves seam `rmsnorm_modulate_fp8` (the MM-DiT attention inputs whose qkv projections compute in
fp8, `pid.quant`): x [B, L, C], shift/scale [B, 1, C] views of the modulation -> e4m3 [B, L, C]
and float32 scales [B, L, 1]; the kernel is `pid.quant.triton_quantize`'s (see there for the
arithmetic and how it matches the reference). Needs e4m3 conversions: compute capability 8.9+.
"""

from __future__ import annotations

import torch

from pid import seams
from pid.quant.fp8 import FP8_MIN_CAPABILITY
from pid.quant import triton_quantize  # a module: it imports pid_kernels, which imports this
from pid_kernels.cuda import _rows as rows
from pid_kernels.registry import Capability, KernelOp, register
from pid_kernels.runtime import triton_device_reasons

reference = seams.rmsnorm_modulate_fp8.reference
# One program holds a whole row in registers.
MAX_WIDTH = 16384
FP8_CAPABILITY = Capability(FP8_MIN_CAPABILITY, "e4m3 conversions and fp8 tensor cores need Ada, Hopper or Blackwell")


@torch.library.custom_op("pid::rmsnorm_modulate_fp8", mutates_args=())
def rmsnorm_modulate_fp8(
    x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = seams.RMS_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same arguments and results as `pid.seams.rmsnorm_modulate_fp8`."""
    _, values, scales = triton_quantize.modulate_fp8(x, None, None, weight, shift, scale, eps)
    return values, scales


@rmsnorm_modulate_fp8.register_fake
def _rmsnorm_modulate_fp8_fake(x, weight, shift, scale, eps=seams.RMS_EPS):
    return x.new_empty(x.shape, dtype=torch.float8_e4m3fn), x.new_empty(*x.shape[:-1], 1, dtype=torch.float32)


def producer_reasons(x: torch.Tensor, weight: torch.Tensor, **operands: torch.Tensor) -> list[str]:
    """Why the fused fp8 producers refuse x with these operands (shared with the residual variant)."""
    reasons = triton_device_reasons(x, weight, *operands.values())
    reasons += rows.row_reasons(x, **operands) + rows.weight_reasons(weight, x)
    if x.shape[-1] > MAX_WIDTH:
        reasons.append(f"rows of {x.shape[-1]} channels (one program holds at most {MAX_WIDTH})")
    if len({t.device for t in (x, weight, *operands.values())}) > 1:
        reasons.append("tensors on different devices")
    return reasons


def supports(x, weight, shift, scale, eps: float = seams.RMS_EPS) -> list[str]:
    return producer_reasons(x, weight, shift=shift, scale=scale)


register(KernelOp("rmsnorm_modulate_fp8", "rmsnorm_modulate_fp8", "triton", rmsnorm_modulate_fp8, supports,
                  capability=FP8_CAPABILITY))
