"""Fused patch embedding: unfold into P x P patches + linear 3*P*P -> C, one pass over the image.

Replaces seam `patch_embed`: one GEMM whose A operand is gathered straight from the
[B, 3, H, W] image (row = patch token, column k = c*P*P + i*P + j, the channel-major
order of F.unfold), bias in the epilogue; no unfolded copy of the image is made.
Accumulates in float32 and rounds once to the input dtype (eager rounds the linear
before the bias add as well).

Tuning keys (PATCH_EMBED): BLOCK_M, BLOCK_N, BLOCK_K (halved for float32 operands,
which take twice the shared memory), num_warps, num_stages.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import tl, triton
from pid_kernels.triton._common import (
    RGB, dot, dot_precision, gemm_block_k, gemm_tile, image_embedding_reasons, patch_grid,
)
from pid_kernels.tuning import config

reference = seams.patch_embed.reference


@triton.jit
def _patch_embed_kernel(
    image_ptr, w_ptr, bias_ptr, out_ptr,
    M, N, tokens, grid_w,
    stride_batch, stride_channel, stride_row, stride_col,
    stride_w_out, stride_w_in,
    PATCH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    K: tl.constexpr = RGB * PATCH * PATCH
    rows, cols = gemm_tile(N, BLOCK_M, BLOCK_N)
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
        acc = dot(a, w, acc, DOT_PRECISION)

    col_ok = cols < N
    acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    out_offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=(rows < M)[:, None] & col_ok[None, :])


@torch.library.custom_op("pid::patch_embed", mutates_args=())
def patch_embed(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Same arguments as `pid.seams.patch_embed`: [B, 3, H, W] -> [B, Li, C] in the image dtype."""
    grid_h, grid_w = patch_grid(image, patch_size)
    tokens = grid_h * grid_w
    rows, width = image.shape[0] * tokens, weight.shape[0]
    out = torch.empty(image.shape[0], tokens, width, device=image.device, dtype=image.dtype)
    tuning = config("patch_embed")
    grid = (triton.cdiv(rows, tuning["BLOCK_M"]) * triton.cdiv(width, tuning["BLOCK_N"]),)
    _patch_embed_kernel[grid](
        image, weight, bias, out,
        rows, width, tokens, grid_w, *image.stride(), *weight.stride(),
        PATCH=patch_size, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=gemm_block_k(tuning, image.dtype),
        DOT_PRECISION=dot_precision(image.dtype),
        num_warps=tuning["num_warps"], num_stages=tuning["num_stages"],
    )
    return out


@patch_embed.register_fake
def _patch_embed_fake(image, weight, bias, patch_size):
    grid_h, grid_w = patch_grid(image, patch_size)
    return image.new_empty(image.shape[0], grid_h * grid_w, weight.shape[0])


def supports(image, weight, bias, patch_size) -> list[str]:
    reasons = image_embedding_reasons(image, weight, bias, patch_size)
    if weight.dim() != 2 or weight.shape[1] != RGB.value * patch_size**2:
        reasons.append(f"weight {tuple(weight.shape)} is not [C, 3*P*P] for P={patch_size}")
    elif bias is not None and tuple(bias.shape) != (weight.shape[0],):
        reasons.append(f"bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")
    return reasons


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as launched in bf16 on `arch` for the [1, 3, H, W] image of
    each real shape (the network's x_t, contiguous)."""
    from pid_kernels.triton import _sass

    tuning = config("patch_embed", _sass.tuning_arch(arch))
    block_k = gemm_block_k(tuning, torch.bfloat16)
    specs = []
    for shape in _sass.pid_shapes():
        (height, width), patch, channels = shape.image_hw, shape.config["patch_size"], shape.config["hidden_size"]
        k = RGB.value * patch * patch
        ints, unit, divisible = _sass.int_arguments(
            M=shape.patch_tokens, N=channels, tokens=shape.patch_tokens, grid_w=width // patch,
            stride_batch=RGB.value * height * width, stride_channel=height * width, stride_row=width, stride_col=1,
            stride_w_out=k, stride_w_in=1,
        )
        specs.append(dict(
            fn=_patch_embed_kernel, signature={"image_ptr": "*bf16", "w_ptr": "*bf16", "bias_ptr": "*bf16",
                                               "out_ptr": "*bf16", **ints},
            constexprs=dict(PATCH=patch, BLOCK_M=tuning["BLOCK_M"], BLOCK_N=tuning["BLOCK_N"], BLOCK_K=block_k,
                            DOT_PRECISION=dot_precision(torch.bfloat16), **unit),
            arch=arch, num_warps=tuning["num_warps"], num_stages=tuning["num_stages"], divisible=divisible,
            variant=f"bf16 P{patch}", shapes=shape.label, mma_useful_fraction=k / (triton.cdiv(k, block_k) * block_k),
        ))
    return _sass.merged(specs)


register(KernelOp("patch_embed", "patch_embed", "triton", patch_embed, supports))
