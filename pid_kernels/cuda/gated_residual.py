"""x + gate * y in one pass (CUDA, csrc/gated_residual.cu).

Serves seam `gated_residual`: after a block's MLP, and in PiT after the expand GEMM
with a per-pixel gate. The gate is a strided view of the modulation ([B, 1, 6C] for
MM-DiT, [B*Li, P2, 96] for PiT pixels), read through its strides, never copied.
Arithmetic in float32, one rounding to x's dtype.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import _rows as rows
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register

reference = seams.gated_residual.reference

gated_residual_op = cuda_ext.define(
    "gated_residual(Tensor x, Tensor gate, Tensor y) -> Tensor",
    fake=lambda x, gate, y: x.new_empty(x.shape),
    cpu=reference,
)


def gated_residual(x, gate, y) -> torch.Tensor:
    """Same arguments and result as `pid.seams.gated_residual`."""
    out = gated_residual_op(rows.as_rows(x, x), rows.as_rows(gate, x), rows.as_rows(y, x))
    return out.view(x.shape)


def supports(x, gate, y) -> list[str]:
    return cuda_ext.device_reasons(x, gate, y) + rows.row_reasons(x, gate=gate, y=y)


register(KernelOp("gated_residual", "gated_residual", "cuda", gated_residual, supports))
