"""Patch embedding with its GEMM in fp8 (pid.quant's e4m3 weight [C, 3*P*P], per-channel scales).

Serves seam `patch_embed_fp8`: the image is unfolded into patch rows and quantized per token in
PyTorch (`F.unfold`, `pid.quant.fp8.quantize_rows`: no gathering producer kernel yet), then the
Triton fp8 GEMM with the bias epilogue (`pid.quant.triton_gemm._fp8_gemm_kernel`), output in the
image dtype. Needs compute capability 8.9+.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pid import seams
from pid.quant.fp8 import quantize_rows
from pid.quant import triton_gemm  # a module: it imports pid_kernels, which imports this
from pid_kernels.registry import KernelOp, register
from pid_kernels.triton._common import RGB, image_embedding_reasons, patch_grid
from pid_kernels.triton.rmsnorm_modulate_fp8 import FP8_CAPABILITY

reference = seams.patch_embed_fp8.reference


@torch.library.custom_op("pid::patch_embed_fp8", mutates_args=())
def patch_embed_fp8(
    image: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """Same arguments as `pid.seams.patch_embed_fp8`: [B, 3, H, W] -> [B, Li, C] in the image dtype."""
    patches = F.unfold(image, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
    values, scales = quantize_rows(patches.reshape(-1, patches.shape[-1]))
    tokens = triton_gemm.triton_scaled_mm(values.contiguous(), scales, weight, weight_scale, bias, image.dtype)
    return tokens.view(image.shape[0], patches.shape[1], weight.shape[0])


@patch_embed_fp8.register_fake
def _patch_embed_fp8_fake(image, weight, weight_scale, bias, patch_size):
    grid_h, grid_w = patch_grid(image, patch_size)
    return image.new_empty(image.shape[0], grid_h * grid_w, weight.shape[0])


def supports(image, weight, weight_scale, bias, patch_size) -> list[str]:
    # The image checks of the bf16 op, with the bias standing in for the weight's dtype.
    reasons = image_embedding_reasons(image, bias, bias, patch_size)
    if weight.device != image.device or weight_scale.device != image.device:
        reasons.append("tensors on different devices")
    if weight.dtype != torch.float8_e4m3fn or weight_scale.dtype != torch.float32:
        reasons.append(f"weight {weight.dtype} / weight_scale {weight_scale.dtype} are not float8_e4m3fn / float32")
    if weight.dim() != 2 or weight.shape[1] != RGB.value * patch_size**2 or weight.stride(-1) != 1:
        reasons.append(f"weight {tuple(weight.shape)} is not a contiguous [C, 3*P*P] for P={patch_size}")
    elif weight.shape[1] % triton_gemm.K_MULTIPLE:
        reasons.append(f"K = 3*P*P = {weight.shape[1]} is not a multiple of {triton_gemm.K_MULTIPLE} (16-byte e4m3 rows)")
    elif tuple(weight_scale.shape) != (weight.shape[0],) or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
        reasons.append(f"weight_scale / bias do not match weight {tuple(weight.shape)}")
    return reasons


register(KernelOp("patch_embed_fp8", "patch_embed_fp8", "triton", patch_embed_fp8, supports, capability=FP8_CAPABILITY))
