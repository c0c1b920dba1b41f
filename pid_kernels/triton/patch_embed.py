"""Fused image embeddings: the patch tokens and the pixel tokens, each one pass over the image.

patch_embed (seam `patch_embed`): unfold into P x P patches + linear 3*P*P -> C as
one GEMM whose A operand is gathered straight from the [B, 3, H, W] image (row =
patch token, column k = c*P*P + i*P + j, the channel-major order of F.unfold),
bias in the epilogue; no unfolded copy of the image is made.

pixel_embed (seam `pixel_embed`): per-pixel linear 3 -> Dp + the full-image
position table, written straight in the patch-major [B*Li, P*P, Dp] layout.

Both accumulate in float32 and round once to the input dtype (eager rounds the
linear before the bias/position add as well).

Tuning keys: PATCH_EMBED: BLOCK_M, BLOCK_N, BLOCK_K (halved for float32 operands,
which take twice the shared memory), num_warps, num_stages; PIXEL_EMBED:
BLOCK_ROWS (output pixel rows per program, a power of two), num_warps.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import dtype_reasons, interpreting, tl, triton, triton_device_reasons
from pid_kernels.tuning import config

patch_embed_reference = seams.patch_embed.reference
pixel_embed_reference = seams.pixel_embed.reference

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The smallest K of a tl.dot (Triton 3.6 on NVIDIA, every dtype but 8-bit).
MIN_DOT_K = 16
# A Triton constant so the kernels can read it; Python code uses RGB.value.
RGB = tl.constexpr(3)


@triton.jit
def _patch_embed_kernel(
    image_ptr, w_ptr, bias_ptr, out_ptr,
    M, N, tokens, grid_w,
    stride_batch, stride_channel, stride_row, stride_col,
    stride_w_out, stride_w_in,
    PATCH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EXACT_DOT: tl.constexpr,
):
    K: tl.constexpr = RGB * PATCH * PATCH
    # Column tiles of one row tile run side by side: its image patches are read once, W stays in L2.
    tiles_n = tl.cdiv(N, BLOCK_N)
    tile_m = tl.program_id(0) // tiles_n
    tile_n = tl.program_id(0) % tiles_n
    rows = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Wrapped indices keep the K loop free of row/column masks; only the store masks.
    tokens_of_rows = (rows % M).to(tl.int64)
    token_in_image = tokens_of_rows % tokens
    patch_origin = (
        (tokens_of_rows // tokens) * stride_batch
        + (token_in_image // grid_w) * PATCH * stride_row
        + (token_in_image % grid_w) * PATCH * stride_col
    )
    w_cols = w_ptr + (cols % N).to(tl.int64) * stride_w_out

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        # k = c*P*P + i*P + j, as F.unfold flattens a patch.
        channel, row, col = ks // (PATCH * PATCH), (ks // PATCH) % PATCH, ks % PATCH
        in_patch = channel * stride_channel + row * stride_row + col * stride_col
        a = tl.load(image_ptr + patch_origin[:, None] + in_patch[None, :], mask=k_ok[None, :], other=0.0)
        w = tl.load(w_cols[None, :] + ks[:, None] * stride_w_in, mask=k_ok[:, None], other=0.0)
        if EXACT_DOT:  # float32 operands must not drop to tf32; the interpreter's bf16 dot is wrong
            acc = tl.dot(a.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, w, acc)

    col_ok = cols < N
    acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    out_offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=(rows < M)[:, None] & col_ok[None, :])


@triton.jit
def _pixel_embed_kernel(
    image_ptr, w_ptr, bias_ptr, position_ptr, out_ptr,
    total_rows, tokens, grid_w, width, dim,
    stride_batch, stride_channel, stride_row, stride_col,
    stride_w_out, stride_w_in, stride_position, stride_position_dim,
    PATCH: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # One output row per pixel, in patch-major order: row = token * P*P + i*P + j.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < total_rows
    token = rows // (PATCH * PATCH)
    in_patch = rows % (PATCH * PATCH)
    token_in_image = token % tokens
    y = (token_in_image // grid_w) * PATCH + in_patch // PATCH
    x = (token_in_image % grid_w) * PATCH + in_patch % PATCH
    pixel = image_ptr + (token // tokens) * stride_batch + y * stride_row + x * stride_col

    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < dim
    tile_ok = row_ok[:, None] & dim_ok[None, :]
    acc = tl.load(bias_ptr + dims, mask=dim_ok, other=0.0).to(tl.float32)[None, :]
    acc += tl.load(
        position_ptr + (y * width + x)[:, None] * stride_position + dims[None, :] * stride_position_dim,
        mask=tile_ok, other=0.0,
    ).to(tl.float32)
    for channel in tl.static_range(RGB):
        value = tl.load(pixel + channel * stride_channel, mask=row_ok, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + dims * stride_w_out + channel * stride_w_in, mask=dim_ok, other=0.0).to(tl.float32)
        acc += value[:, None] * w[None, :]
    tl.store(out_ptr + rows[:, None] * dim + dims[None, :], acc.to(out_ptr.dtype.element_ty), mask=tile_ok)


def _grid_hw(image, patch_size):
    return image.shape[2] // patch_size, image.shape[3] // patch_size


@torch.library.custom_op("pid::patch_embed", mutates_args=())
def patch_embed(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Same arguments as `pid.seams.patch_embed`: [B, 3, H, W] -> [B, Li, C] in the image dtype."""
    grid_h, grid_w = _grid_hw(image, patch_size)
    tokens = grid_h * grid_w
    rows, width = image.shape[0] * tokens, weight.shape[0]
    out = torch.empty(image.shape[0], tokens, width, device=image.device, dtype=image.dtype)
    tuning = config("patch_embed")
    grid = (triton.cdiv(rows, tuning["BLOCK_M"]) * triton.cdiv(width, tuning["BLOCK_N"]),)
    # float32 operands take twice the shared memory of the 16-bit tiles the tables are sized for.
    block_k = max(MIN_DOT_K, tuning["BLOCK_K"] // 2) if image.dtype == torch.float32 else tuning["BLOCK_K"]
    _patch_embed_kernel[grid](
        image, weight, bias, out,
        rows, width, tokens, grid_w, *image.stride(), *weight.stride(),
        PATCH=patch_size, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=block_k,
        EXACT_DOT=interpreting() or image.dtype == torch.float32,
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"],
    )
    return out


@patch_embed.register_fake
def _patch_embed_fake(image, weight, bias, patch_size):
    grid_h, grid_w = _grid_hw(image, patch_size)
    return image.new_empty(image.shape[0], grid_h * grid_w, weight.shape[0])


@torch.library.custom_op("pid::pixel_embed", mutates_args=())
def pixel_embed(
    image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, position_table: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """Same arguments as `pid.seams.pixel_embed`: [B, 3, H, W] -> [B*Li, P*P, Dp] in the image dtype."""
    grid_h, grid_w = _grid_hw(image, patch_size)
    tokens, dim = grid_h * grid_w, weight.shape[0]
    out = torch.empty(image.shape[0] * tokens, patch_size * patch_size, dim, device=image.device, dtype=image.dtype)
    tuning = config("pixel_embed")
    total_rows = out.shape[0] * out.shape[1]
    _pixel_embed_kernel[(triton.cdiv(total_rows, tuning["BLOCK_ROWS"]),)](
        image, weight, bias, position_table, out,
        total_rows, tokens, grid_w, image.shape[3], dim,
        *image.stride(), *weight.stride(), *position_table.stride(),
        PATCH=patch_size, BLOCK_ROWS=tuning["BLOCK_ROWS"], BLOCK_D=triton.next_power_of_2(dim),
        num_warps=tuning["num_warps"],
    )
    return out


@pixel_embed.register_fake
def _pixel_embed_fake(image, weight, bias, position_table, patch_size):
    grid_h, grid_w = _grid_hw(image, patch_size)
    return image.new_empty(image.shape[0] * grid_h * grid_w, patch_size * patch_size, weight.shape[0])


def _image_reasons(image, weight, bias, patch_size) -> list[str]:
    """Refusals common to both embeddings."""
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


def patch_embed_supports(image, weight, bias, patch_size) -> list[str]:
    reasons = _image_reasons(image, weight, bias, patch_size)
    if weight.dim() != 2 or weight.shape[1] != RGB.value * patch_size**2:
        reasons.append(f"weight {tuple(weight.shape)} is not [C, 3*P*P] for P={patch_size}")
    elif bias is not None and tuple(bias.shape) != (weight.shape[0],):
        reasons.append(f"bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
    return reasons


def pixel_embed_supports(image, weight, bias, position_table, patch_size) -> list[str]:
    reasons = _image_reasons(image, weight, bias, patch_size)
    reasons += triton_device_reasons(position_table) + dtype_reasons(FLOAT_DTYPES, position_table)
    if position_table.device != image.device:
        reasons.append("position table on another device")
    if weight.dim() != 2 or weight.shape[1] != RGB.value:
        return reasons + [f"weight {tuple(weight.shape)} is not [Dp, 3]"]
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        reasons.append(f"bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
    if image.dim() == 4 and tuple(position_table.shape) != (image.shape[2] * image.shape[3], weight.shape[0]):
        reasons.append(f"position table {tuple(position_table.shape)} is not [H*W, Dp]")
    return reasons


register(KernelOp("patch_embed", "patch_embed", "triton", patch_embed, patch_embed_supports))
register(KernelOp("pixel_embed", "pixel_embed", "triton", pixel_embed, pixel_embed_supports))
