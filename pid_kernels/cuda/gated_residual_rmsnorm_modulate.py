"""x' = x + gate * y fused with the next adaLN, rmsnorm_modulate(x') (CUDA, csrc/gated_residual.cu).

Serves seam `gated_residual_rmsnorm_modulate`, between a block's attention and its
MLP: x, gate and y are read once, x' and the modulated x' written once. The gate,
shift and scale are strided views of the [B, 1, 6C] modulation. x' is rounded to x's
dtype before its statistics, as in the eager chain; statistics and arithmetic float32.
"""

from __future__ import annotations

from pid import seams
from pid_kernels.cuda import _rows as rows
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register

reference = seams.gated_residual_rmsnorm_modulate.reference

gated_residual_rmsnorm_modulate_op = cuda_ext.define(
    "gated_residual_rmsnorm_modulate(Tensor x, Tensor gate, Tensor y, Tensor weight, Tensor shift, Tensor scale, "
    "float eps) -> (Tensor, Tensor)",
    fake=lambda x, gate, y, weight, shift, scale, eps: (x.new_empty(x.shape), x.new_empty(x.shape)),
    cpu=reference,
)


def gated_residual_rmsnorm_modulate(x, gate, y, weight, shift, scale, eps: float = seams.RMS_EPS):
    """Same arguments and results as `pid.seams.gated_residual_rmsnorm_modulate`: (x', modulated x')."""
    views = [rows.as_rows(t, x) for t in (x, gate, y)]
    updated, modulated = gated_residual_rmsnorm_modulate_op(
        *views, weight, rows.as_rows(shift, x), rows.as_rows(scale, x), eps
    )
    return updated.view(x.shape), modulated.view(x.shape)


def supports(x, gate, y, weight, shift, scale, eps: float = seams.RMS_EPS) -> list[str]:
    reasons = cuda_ext.device_reasons(x, gate, y, weight, shift, scale)
    reasons += rows.row_reasons(x, gate=gate, y=y, shift=shift, scale=scale)
    return reasons + rows.weight_reasons(weight, x)


register(
    KernelOp(
        "gated_residual_rmsnorm_modulate",
        "gated_residual_rmsnorm_modulate",
        "cuda",
        gated_residual_rmsnorm_modulate,
        supports,
    )
)
