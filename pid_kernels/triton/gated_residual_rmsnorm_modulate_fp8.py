"""x' = x + gate * y and the next adaLN, quantized per token for an fp8 GEMM, in one pass.

Serves seam `gated_residual_rmsnorm_modulate_fp8` (between an MM-DiT block's attention and its
SwiGLU MLP when w1/w3 compute in fp8, `pid.quant`): x' in x's dtype, and the modulated x' as
e4m3 values [B, L, C] with float32 scales [B, L, 1]; gate, shift and scale are strided views of
the modulation. Kernel: `pid.quant.triton_quantize`. Needs compute capability 8.9+.
"""

from __future__ import annotations

import torch

from pid import seams
from pid.quant import triton_quantize  # a module: it imports pid_kernels, which imports this
from pid_kernels.registry import KernelOp, register
from pid_kernels.triton.rmsnorm_modulate_fp8 import FP8_CAPABILITY, producer_reasons

reference = seams.gated_residual_rmsnorm_modulate_fp8.reference


@torch.library.custom_op("pid::gated_residual_rmsnorm_modulate_fp8", mutates_args=())
def gated_residual_rmsnorm_modulate_fp8(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor,
    scale: torch.Tensor, eps: float = seams.RMS_EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same arguments and results as `pid.seams.gated_residual_rmsnorm_modulate_fp8`."""
    return triton_quantize.modulate_fp8(x, gate, y, weight, shift, scale, eps)


@gated_residual_rmsnorm_modulate_fp8.register_fake
def _fake(x, gate, y, weight, shift, scale, eps=seams.RMS_EPS):
    return (x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.float8_e4m3fn),
            x.new_empty(*x.shape[:-1], 1, dtype=torch.float32))


def supports(x, gate, y, weight, shift, scale, eps: float = seams.RMS_EPS) -> list[str]:
    return producer_reasons(x, weight, gate=gate, y=y, shift=shift, scale=scale)


register(KernelOp("gated_residual_rmsnorm_modulate_fp8", "gated_residual_rmsnorm_modulate_fp8", "triton",
                  gated_residual_rmsnorm_modulate_fp8, supports, capability=FP8_CAPABILITY))
