"""Fused pixel embedding: per-pixel linear 3 -> Dp + the position table, patch-major, one pass.

Replaces seam `pixel_embed`: each program reads a run of image pixels in the
patch-major order of the PiT blocks, applies the 3 -> Dp linear and adds the
full-image position table [H*W, Dp], and writes [B*Li, P*P, Dp] directly.
Accumulates in float32 and rounds once to the input dtype (eager rounds the linear
before the position add as well).

Tuning keys (PIXEL_EMBED): BLOCK_ROWS (output pixel rows per program, a power of
two), num_warps.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, tl, triton, triton_device_reasons
from pid_kernels.triton._common import RGB, image_embedding_reasons, patch_grid
from pid_kernels.tuning import config

reference = seams.pixel_embed.reference


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


@torch.library.custom_op("pid::pixel_embed", mutates_args=())
def pixel_embed(
    image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, position_table: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """Same arguments as `pid.seams.pixel_embed`: [B, 3, H, W] -> [B*Li, P*P, Dp] in the image dtype."""
    grid_h, grid_w = patch_grid(image, patch_size)
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
    grid_h, grid_w = patch_grid(image, patch_size)
    return image.new_empty(image.shape[0] * grid_h * grid_w, patch_size * patch_size, weight.shape[0])


def supports(image, weight, bias, position_table, patch_size) -> list[str]:
    reasons = image_embedding_reasons(image, weight, bias, patch_size)
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


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as launched in bf16 on `arch` for each real shape (a
    contiguous [1, 3, H, W] image, weight [Dp, 3], position table [H*W, Dp])."""
    from pid_kernels.triton import _sass

    tuning = config("pixel_embed", _sass.tuning_arch(arch))
    specs = []
    for shape in _sass.pid_shapes():
        (height, width), patch, dim = shape.image_hw, shape.config["patch_size"], shape.config["pixel_hidden_size"]
        ints, unit, divisible = _sass.int_arguments(
            total_rows=height * width, tokens=shape.patch_tokens, grid_w=width // patch, width=width, dim=dim,
            stride_batch=RGB.value * height * width, stride_channel=height * width, stride_row=width, stride_col=1,
            stride_w_out=RGB.value, stride_w_in=1, stride_position=dim, stride_position_dim=1,
        )
        specs.append(dict(
            fn=_pixel_embed_kernel, signature={**{name: "*bf16" for name in _pixel_embed_kernel.arg_names[:5]}, **ints},
            constexprs=dict(PATCH=patch, BLOCK_ROWS=tuning["BLOCK_ROWS"], BLOCK_D=triton.next_power_of_2(dim), **unit),
            # Memory-bound: it needs warps in flight (compiled: <= 128 registers, 4 CTAs = 16 warps per SM).
            arch=arch, num_warps=tuning["num_warps"], num_stages=3, divisible=divisible, ctas_per_sm=4,
            variant=f"bf16 P{patch} Dp{dim}", shapes=shape.label,
        ))
    return _sass.merged(specs)


register(KernelOp("pixel_embed", "pixel_embed", "triton", pixel_embed, supports))
