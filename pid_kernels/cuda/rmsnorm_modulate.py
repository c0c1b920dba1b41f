"""adaLN in one pass: rms_norm(x) * weight * (1 + scale) + shift (CUDA, csrc/rmsnorm_modulate.cu).

Serves seam `rmsnorm_modulate` at both of its call sites, with shift/scale read
through their strides, never copied:
  MM-DiT tokens  x [B, L, C=1536], shift/scale [B, 1, C] views of the [B, 1, 6C]
                 modulation (broadcast over tokens): a few warps per token;
  PiT pixels     x [B*Li, P2, 16], shift/scale [B*Li, P2, 16] views of the
                 [B*Li, P2, 96] modulation (one per pixel): one thread per pixel
                 (the attention-half prologue, benchmarked as `pit_pixel_norm`).
Statistics and arithmetic in float32, one rounding to x's dtype at the end; 16-byte
accesses when every operand's rows are 16-byte aligned, element accesses otherwise.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import _rows as rows
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register

reference = seams.rmsnorm_modulate.reference

rmsnorm_modulate_op = cuda_ext.define(
    "rmsnorm_modulate(Tensor x, Tensor weight, Tensor shift, Tensor scale, float eps) -> Tensor",
    fake=lambda x, weight, shift, scale, eps: x.new_empty(x.shape),
    cpu=reference,
)


def rmsnorm_modulate(x, weight, shift, scale, eps: float = seams.RMS_EPS) -> torch.Tensor:
    """Same arguments and result as `pid.seams.rmsnorm_modulate`."""
    shift, scale = rows.as_rows(shift, x), rows.as_rows(scale, x)
    return rmsnorm_modulate_op(rows.as_rows(x, x), weight, shift, scale, eps).view(x.shape)


def supports(x, weight, shift, scale, eps: float = seams.RMS_EPS) -> list[str]:
    reasons = cuda_ext.device_reasons(x, weight, shift, scale)
    reasons += rows.row_reasons(x, shift=shift, scale=scale)
    return reasons + rows.weight_reasons(weight, x)


register(KernelOp("rmsnorm_modulate", "rmsnorm_modulate", "cuda", rmsnorm_modulate, supports))
