"""Decoded images to bytes: [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3] (CUDA, csrc/to_image.cu).

Serves seam `to_image` in both modes: truncation of (x + 1) * 127.5 toward zero,
as the release's image writer (files byte-identical to it), and round half to even.
The float32 arithmetic is the eager chain's, unfused, so the bytes are equal, not close.
Planar reads of 16 bytes per colour plane and thread, interleaved 4-byte writes;
other layouts go pixel by pixel through their strides.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons

reference = seams.to_image.reference

to_image_op = cuda_ext.define(
    "to_image(Tensor images, bool round_to_nearest) -> Tensor",
    fake=lambda images, round_to_nearest: images.new_empty(
        (images.shape[0], images.shape[2], images.shape[3], 3), dtype=torch.uint8
    ),
    cpu=reference,
)


def to_image(images, round_to_nearest: bool) -> torch.Tensor:
    """Same arguments and result as `pid.seams.to_image`."""
    return to_image_op(images, round_to_nearest)


def supports(images, round_to_nearest: bool) -> list[str]:
    reasons = cuda_ext.device_reasons(images)
    reasons += dtype_reasons(FLOAT_DTYPES, images)
    if images.dim() != 4 or images.shape[1] != 3:
        reasons.append(f"images {tuple(images.shape)} are not [B, 3, H, W]")
    return reasons


register(KernelOp("to_image", "to_image", "cuda", to_image, supports))
