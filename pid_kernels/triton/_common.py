"""Helpers shared by the Triton op modules: the dot precision, the K step, GEMM tiles, image geometry.

Not an op module (the leading underscore keeps pid_kernels from registering it).
"""

from __future__ import annotations

import torch

from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, interpreting, tl, triton, triton_device_reasons

# A Triton constant so kernels can read it; Python code uses RGB.value.
RGB = tl.constexpr(3)
# The smallest K of a tl.dot (Triton 3.6 on NVIDIA, every dtype but 8-bit).
MIN_DOT_K = 16

# How `dot` multiplies, chosen on the host by `dot_precision`:
DOT_NATIVE = tl.constexpr(0)  # the operands' own tensor-core dot (16-bit operands on a GPU)
# Operands upcast to float32, exact products: the interpreter's 16-bit dot is wrong, and
# float32 operands that must not drop to tf32 (~1e-3 relative error).
DOT_IEEE = tl.constexpr(1)
DOT_TF32X3 = tl.constexpr(2)  # three tf32 passes: near float32 accuracy on the tensor cores


@triton.jit
def dot(a, b, acc, PRECISION: tl.constexpr):
    """tl.dot(a, b, acc) (acc may be None) at the given DOT_* precision."""
    if PRECISION == DOT_IEEE:
        result = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif PRECISION == DOT_TF32X3:
        result = tl.dot(a, b, acc, input_precision="tf32x3")
    else:
        result = tl.dot(a, b, acc)
    return result


@triton.jit
def gemm_tile(N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(rows, cols): the output rows and columns of this program's [BLOCK_M, BLOCK_N] tile of an
    [M, N] GEMM launched on cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N) programs. The column tiles of
    one row tile are consecutive programs, so they run side by side: the A rows are read from
    memory once while the weights stay in L2."""
    tiles_n = tl.cdiv(N, BLOCK_N)
    tile_m = tl.program_id(0) // tiles_n
    tile_n = tl.program_id(0) % tiles_n
    return tile_m * BLOCK_M + tl.arange(0, BLOCK_M), tile_n * BLOCK_N + tl.arange(0, BLOCK_N)


def dot_precision(dtype: torch.dtype, float32=DOT_IEEE) -> int:
    """The DOT_* value for operands of `dtype`: DOT_IEEE under the interpreter, `float32`
    for float32 operands on a GPU, DOT_NATIVE for 16-bit ones."""
    if interpreting():
        return DOT_IEEE.value
    return float32.value if dtype == torch.float32 else DOT_NATIVE.value


def gemm_block_k(tuning: dict, dtype: torch.dtype) -> int:
    """The tuning table's BLOCK_K, halved for float32 operands: the tables size their
    shared-memory stages for 16-bit tiles, and float32 takes twice the bytes."""
    return max(MIN_DOT_K, tuning["BLOCK_K"] // 2) if dtype == torch.float32 else tuning["BLOCK_K"]


def patch_grid(image: torch.Tensor, patch_size: int) -> tuple[int, int]:
    """(grid_h, grid_w): patches per column and row of an image [B, 3, H, W]."""
    return image.shape[2] // patch_size, image.shape[3] // patch_size


def image_embedding_reasons(image, weight, bias, patch_size) -> list[str]:
    """Refusals common to the patch and pixel embeddings of an image [B, 3, H, W]."""
    reasons = triton_device_reasons(image, weight, bias)
    reasons += dtype_reasons(FLOAT_DTYPES, image, weight, bias)
    if bias is None:
        return reasons + ["no bias (both embeddings always have one)"]
    if len({image.dtype, weight.dtype, bias.dtype}) > 1:
        reasons.append("image, weight and bias differ in dtype")
    if len({image.device, weight.device, bias.device}) > 1:
        reasons.append("tensors on different devices")
    if image.dim() != 4 or image.shape[1] != RGB.value:
        return reasons + [f"image {tuple(image.shape)} is not [B, 3, H, W]"]
    if image.shape[2] % patch_size or image.shape[3] % patch_size:
        reasons.append(f"image {tuple(image.shape[2:])} is not a multiple of the patch size {patch_size}")
    if image.numel() == 0:
        reasons.append("empty image")
    return reasons
