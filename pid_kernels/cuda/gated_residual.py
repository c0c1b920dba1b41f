"""x + gate * y, alone or fused with the next adaLN (CUDA, csrc/gated_residual.cu).

Two seams: `gated_residual` (after a block's MLP, and in PiT after the expand GEMM with
a per-pixel gate) and `gated_residual_rmsnorm_modulate` (between attention and MLP:
x, gate and y are read once, x' and the modulated x' written once). `gated_residual_`
is the in-place form for callers that own x. The gate, shift and scale are strided
views of the modulation ([B, 1, 6C] for MM-DiT, [B*Li, P2, 96] for PiT pixels). x'
is rounded to x's dtype before its statistics, as in the eager chain.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register

reference = seams.gated_residual.reference
fused_reference = seams.gated_residual_rmsnorm_modulate.reference


def _inplace_reference(x, gate, y):
    x.copy_(reference(x, gate, y))


gated_residual_op = cuda_ext.define(
    "gated_residual(Tensor x, Tensor gate, Tensor y) -> Tensor",
    fake=lambda x, gate, y: x.new_empty(x.shape),
    cpu=reference,
)
gated_residual_inplace_op = cuda_ext.define(
    "gated_residual_(Tensor(a!) x, Tensor gate, Tensor y) -> ()",
    fake=lambda x, gate, y: None,
    cpu=_inplace_reference,
)
gated_residual_rmsnorm_modulate_op = cuda_ext.define(
    "gated_residual_rmsnorm_modulate(Tensor x, Tensor gate, Tensor y, Tensor weight, Tensor shift, Tensor scale, "
    "float eps) -> (Tensor, Tensor)",
    fake=lambda x, gate, y, weight, shift, scale, eps: (x.new_empty(x.shape), x.new_empty(x.shape)),
    cpu=fused_reference,
)


def gated_residual(x, gate, y) -> torch.Tensor:
    """Same arguments and result as `pid.seams.gated_residual`."""
    out = gated_residual_op(cuda_ext.as_rows(x, x), cuda_ext.as_rows(gate, x), cuda_ext.as_rows(y, x))
    return out.view(x.shape)


def supports(x, gate, y) -> list[str]:
    return cuda_ext.device_reasons(x, gate, y) + cuda_ext.row_reasons(x, gate=gate, y=y)


def gated_residual_(x, gate, y) -> torch.Tensor:
    """x += gate * y in place (rounded once); falls back to the reference where the kernel refuses."""
    reasons = supports(x, gate, y)
    if not x.is_contiguous():
        reasons.append("in place needs a contiguous x")
    if reasons:
        _inplace_reference(x, gate, y)
    else:
        gated_residual_inplace_op(cuda_ext.as_rows(x, x), cuda_ext.as_rows(gate, x), cuda_ext.as_rows(y, x))
    return x


def gated_residual_rmsnorm_modulate(x, gate, y, weight, shift, scale, eps: float = seams.RMS_EPS):
    """Same arguments and results as `pid.seams.gated_residual_rmsnorm_modulate`: (x', modulated x')."""
    rows = [cuda_ext.as_rows(t, x) for t in (x, gate, y)]
    updated, modulated = gated_residual_rmsnorm_modulate_op(
        *rows, weight, cuda_ext.as_rows(shift, x), cuda_ext.as_rows(scale, x), eps
    )
    return updated.view(x.shape), modulated.view(x.shape)


def fused_supports(x, gate, y, weight, shift, scale, eps: float = seams.RMS_EPS) -> list[str]:
    reasons = cuda_ext.device_reasons(x, gate, y, weight, shift, scale)
    reasons += cuda_ext.row_reasons(x, gate=gate, y=y, shift=shift, scale=scale)
    return reasons + cuda_ext.weight_reasons(weight, x)


register(KernelOp("gated_residual", "gated_residual", "cuda", gated_residual, supports))
register(
    KernelOp(
        "gated_residual_rmsnorm_modulate",
        "gated_residual_rmsnorm_modulate",
        "cuda",
        gated_residual_rmsnorm_modulate,
        fused_supports,
    )
)
