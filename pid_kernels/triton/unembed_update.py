"""Fused final layer + sampler step: pixel tokens -> the next x_t, one pass.

Replaces seam `unembed_update`: RMSNorm(Dp) + linear Dp -> 3 per pixel
token, un-patchify to [B, 3, H, W], x0 = x_t - t * v and, unless this is the last
step (noise None), x_next = (1 - t') * x0 + t' * noise. One program reads a run
of pixel tokens in their patch-major order and writes the matching image pixels
of all three channels.

Precision: every step is float32; the output is rounded once to x_t's dtype.
The seam computes x0 in float64 and rounds it to x_t's dtype (float32 in the
Decoder); our x0 = x_t - t*v in float32 is off from that by at most 1 ulp of
max(|x_t|, |t*v|) (2^-24 relative, one rounding of the product and one of the
difference, or a single one where they contract to an FMA), far under the error
of the velocity itself, which eager rounds to the pixels' dtype twice
(RMSNorm output and linear).

Tuning keys (UNEMBED_UPDATE): BLOCK_ROWS (pixel tokens per program, a power of two), num_warps.
"""

from __future__ import annotations

from typing import Optional

import torch

from pid import seams
from pid_kernels.registry import KernelOp, register
from pid_kernels.runtime import FLOAT_DTYPES, dtype_reasons, triton, tl, triton_device_reasons
from pid_kernels.triton._common import RGB
from pid_kernels.tuning import config

reference = seams.unembed_update.reference


@triton.jit
def _unembed_update_kernel(
    pixels_ptr, norm_w_ptr, w_ptr, bias_ptr, x_t_ptr, t_ptr, t_next_ptr, noise_ptr, out_ptr,
    total_rows, tokens, grid_w, height, width, dim, eps,
    stride_token, stride_pixel, stride_dim, stride_w_out, stride_w_in,
    PATCH: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr, HAS_NOISE: tl.constexpr,
):
    # One row per pixel token, in patch-major order: row = token * P*P + i*P + j.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < total_rows
    token = rows // (PATCH * PATCH)
    in_patch = rows % (PATCH * PATCH)
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < dim

    features = tl.load(
        pixels_ptr + (token * stride_token + in_patch * stride_pixel)[:, None] + dims[None, :] * stride_dim,
        mask=row_ok[:, None] & dim_ok[None, :], other=0.0,
    ).to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(features * features, axis=1) / dim + eps)
    norm_w = tl.load(norm_w_ptr + dims, mask=dim_ok, other=0.0).to(tl.float32)
    normed = features * inv_rms[:, None] * norm_w[None, :]

    token_in_image = token % tokens
    y = (token_in_image // grid_w) * PATCH + in_patch // PATCH
    x = (token_in_image % grid_w) * PATCH + in_patch % PATCH
    # x_t, noise and the output are contiguous [B, 3, H, W]: one offset serves all three.
    first_channel = (token // tokens) * RGB * height * width + y * width + x
    t_now = tl.load(t_ptr).to(tl.float32)
    t_next = tl.load(t_next_ptr).to(tl.float32)
    for channel in tl.static_range(RGB):
        w = tl.load(w_ptr + channel * stride_w_out + dims * stride_w_in, mask=dim_ok, other=0.0).to(tl.float32)
        velocity = tl.sum(normed * w[None, :], axis=1) + tl.load(bias_ptr + channel).to(tl.float32)
        offsets = first_channel + channel * height * width
        x_next = tl.load(x_t_ptr + offsets, mask=row_ok, other=0.0).to(tl.float32) - t_now * velocity
        if HAS_NOISE:
            noise = tl.load(noise_ptr + offsets, mask=row_ok, other=0.0).to(tl.float32)
            x_next = (1.0 - t_next) * x_next + t_next * noise
        tl.store(out_ptr + offsets, x_next.to(out_ptr.dtype.element_ty), mask=row_ok)


@torch.library.custom_op("pid::unembed_update", mutates_args=())
def unembed_update(
    pixels: torch.Tensor,
    norm_weight: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    height: int,
    width: int,
    patch_size: int,
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    noise: Optional[torch.Tensor],
) -> torch.Tensor:
    """pixels [B*Li, P*P, Dp] + x_t [B, 3, H, W] -> the next x_t (x0 when noise is None), x_t's dtype."""
    out = torch.empty_like(x_t, memory_format=torch.contiguous_format)
    tokens = (height // patch_size) * (width // patch_size)
    total_rows = pixels.shape[0] * pixels.shape[1]
    tuning = config("unembed_update")
    _unembed_update_kernel[(triton.cdiv(total_rows, tuning["BLOCK_ROWS"]),)](
        pixels, norm_weight, weight, bias, x_t, t, t_next, x_t if noise is None else noise, out,
        total_rows, tokens, width // patch_size, height, width, pixels.shape[2], seams.RMS_EPS,
        *pixels.stride(), *weight.stride(),
        PATCH=patch_size, BLOCK_ROWS=tuning["BLOCK_ROWS"], BLOCK_D=triton.next_power_of_2(pixels.shape[2]),
        HAS_NOISE=noise is not None, num_warps=tuning["num_warps"],
    )
    return out


@unembed_update.register_fake
def _unembed_update_fake(pixels, norm_weight, weight, bias, height, width, patch_size, x_t, t, t_next, noise):
    return torch.empty_like(x_t, memory_format=torch.contiguous_format)


def fused(pixels, norm_weight, weight, bias, image_hw, patch_size, x_t, t, t_next, noise):
    """The seam's signature over the custom op (whose schema takes H and W as ints)."""
    height, width = image_hw
    return unembed_update(pixels, norm_weight, weight, bias, height, width, patch_size, x_t, t, t_next, noise)


def supports(pixels, norm_weight, weight, bias, image_hw, patch_size, x_t, t, t_next, noise) -> list[str]:
    tensors = (pixels, norm_weight, weight, bias, x_t, t, t_next, noise)
    reasons = triton_device_reasons(*tensors) + dtype_reasons(FLOAT_DTYPES, *tensors)
    if bias is None:
        return reasons + ["no bias (the final layer always has one)"]
    if len({tensor.device for tensor in tensors if tensor is not None}) > 1:
        reasons.append("tensors on different devices")
    height, width = image_hw
    if x_t.dim() != 4 or x_t.shape[1] != 3 or tuple(x_t.shape[2:]) != (height, width):
        return reasons + [f"x_t {tuple(x_t.shape)} is not [B, 3, {height}, {width}]"]
    if height % patch_size or width % patch_size:
        reasons.append(f"image {height}x{width} is not a multiple of the patch size {patch_size}")
    tokens = x_t.shape[0] * (height // patch_size) * (width // patch_size)
    if pixels.dim() != 3 or tuple(pixels.shape[:2]) != (tokens, patch_size * patch_size):
        return reasons + [f"pixels {tuple(pixels.shape)} is not [B*Li, P*P, Dp] = [{tokens}, {patch_size**2}, Dp]"]
    dim = pixels.shape[2]
    if tuple(norm_weight.shape) != (dim,) or tuple(weight.shape) != (3, dim) or tuple(bias.shape) != (3,):
        reasons.append(f"norm weight, weight, bias {[tuple(p.shape) for p in (norm_weight, weight, bias)]} "
                       f"are not [Dp], [3, Dp], [3] for Dp={dim}")
    if t.numel() != 1 or t_next.numel() != 1:
        reasons.append("t and t_next must be single values")
    if not x_t.is_contiguous() or (noise is not None and not noise.is_contiguous()):
        reasons.append("x_t and noise must be contiguous")
    if noise is not None and (noise.shape != x_t.shape or noise.dtype != x_t.dtype):
        reasons.append(f"noise {tuple(noise.shape)} {noise.dtype} does not match x_t {tuple(x_t.shape)} {x_t.dtype}")
    if x_t.numel() == 0:
        reasons.append("empty image")
    return reasons


def compile_specs(arch: str) -> list[dict]:
    """pid_kernels.triton._sass specs: the kernel as launched on `arch` for each real shape, with noise
    (every step but the last) and without (the last step); pixels [Li, P*P, Dp] contiguous."""
    from pid_kernels.triton import _sass

    tuning = config("unembed_update", _sass.tuning_arch(arch))
    specs = []
    for shape in _sass.pid_shapes():
        (height, width), patch, dim = shape.image_hw, shape.config["patch_size"], shape.config["pixel_hidden_size"]
        ints, unit, divisible = _sass.int_arguments(
            total_rows=height * width, tokens=shape.patch_tokens, grid_w=width // patch, height=height, width=width,
            dim=dim, stride_token=patch * patch * dim, stride_pixel=dim, stride_dim=1, stride_w_out=dim, stride_w_in=1,
        )
        # The network's weights and pixel tokens in bf16; the sampler's x_t, t, noise and out in float32.
        signature = {**{name: "*bf16" for name in _unembed_update_kernel.arg_names[:4]},
                     **{name: "*fp32" for name in _unembed_update_kernel.arg_names[4:9]}, **ints, "eps": "fp32"}
        for has_noise in (True, False):
            specs.append(dict(
                fn=_unembed_update_kernel, signature=signature,
                constexprs=dict(PATCH=patch, BLOCK_ROWS=tuning["BLOCK_ROWS"], BLOCK_D=triton.next_power_of_2(dim),
                                HAS_NOISE=has_noise, **unit),
                # Memory-bound: it needs warps in flight (compiled: <= 128 registers, 4 CTAs = 16 warps per SM).
            arch=arch, num_warps=tuning["num_warps"], num_stages=3, divisible=divisible, ctas_per_sm=4,
                variant=f"P{patch} Dp{dim}{' noise' if has_noise else ' last step'}", shapes=shape.label,
            ))
    return _sass.merged(specs)


register(KernelOp("unembed_update", "unembed_update", "triton", fused, supports))
