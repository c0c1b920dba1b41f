"""What the row kernels of csrc/rows.cuh take, shared by the CUDA op modules.

The row ops (rmsnorm_modulate, gated_residual, gated_residual_rmsnorm_modulate,
pit_pixel_mlp) read x [..., C] and operands broadcast to x's shape (the modulation's
strided views) as 3-D [outer, inner, C] views whose channels are contiguous.
"""

from __future__ import annotations

import torch

from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons

# Widest row (width x element size) the row kernels hold in registers: PID_MAX_ROW_BYTES.
MAX_ROW_BYTES = 32768


def row_reasons(x: torch.Tensor, **operands: torch.Tensor) -> list[str]:
    """Why the row kernels cannot take x [..., C] (2-D or 3-D) with these operands, each
    broadcast to x's shape (empty list: they can)."""
    if x.dtype not in FLOAT_DTYPES:
        return dtype_reasons(FLOAT_DTYPES, x)
    if x.dim() not in (2, 3):
        return [f"x is {x.dim()}-D (supported: [rows, C] and [B, rows, C])"]
    width = x.shape[-1]
    if width == 0:
        return ["x has no channels"]
    if width * x.element_size() > MAX_ROW_BYTES:
        return [f"rows of {width * x.element_size()} bytes (the kernels hold at most {MAX_ROW_BYTES})"]
    reasons = []
    for name, operand in {"x": x, **operands}.items():
        if operand.dtype != x.dtype:
            reasons.append(f"{name} is {operand.dtype}, x is {x.dtype}")
        elif not _broadcasts_to(operand.shape, x.shape):
            reasons.append(f"{name} {tuple(operand.shape)} does not broadcast to x {tuple(x.shape)}")
        elif width > 1 and operand.expand(x.shape).stride(-1) != 1:
            reasons.append(f"{name} is not contiguous over channels")
    return reasons


def weight_reasons(weight: torch.Tensor, x: torch.Tensor, name: str = "weight") -> list[str]:
    """Why `weight` is not the contiguous [C] vector of x's dtype that the kernels read."""
    if tuple(weight.shape) == (x.shape[-1],) and weight.dtype == x.dtype and weight.is_contiguous():
        return []
    return [f"{name} must be a contiguous [{x.shape[-1]}] {x.dtype}, got {tuple(weight.shape)} {weight.dtype}"]


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def as_rows(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` broadcast to `like`'s shape as the kernels' 3-D [outer, inner, C] view (no copy)."""
    expanded = tensor.expand(like.shape)
    return expanded if expanded.dim() == 3 else expanded.unsqueeze(0)
