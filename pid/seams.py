"""The seams of the PiD network: every op a fused kernel may replace, in plain PyTorch.

The model calls these functions, never their bodies inline, so `pid_kernels`
(Triton) and `csrc` (CUDA C++) can swap one op at a time with `override(name, fn)`.
The bodies here are the references: they follow the release's arithmetic
(float32 RMS statistics, float64 sampler update) so the float32 path lands on the
golden vectors.

Shapes: B batch, Li image tokens (patch grid Hs*Ws), Lt text tokens, C width,
P2 = patch_size**2 pixels per patch, Dp per-pixel width.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

RMS_EPS = 1e-6

_overrides: dict[str, Callable] = {}


def seam(fn: Callable) -> Callable:
    """Route calls to `fn` through the override table (identity when none is set)."""

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        return _overrides.get(fn.__name__, fn)(*args, **kwargs)

    dispatch.reference = fn
    SEAMS[fn.__name__] = dispatch
    return dispatch


SEAMS: dict[str, Callable] = {}


def override(name: str, impl: Optional[Callable]) -> Optional[Callable]:
    """Install `impl` for seam `name` (None restores the reference); returns the previous one."""
    if name not in SEAMS:
        raise KeyError(f"unknown seam {name!r}; seams: {sorted(SEAMS)}")
    previous = _overrides.pop(name, None)
    if impl is not None:
        _overrides[name] = impl
    return previous


def active_overrides() -> dict[str, Callable]:
    return dict(_overrides)


@seam
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = RMS_EPS) -> torch.Tensor:
    """RMSNorm over the last dim: statistics in float32, scaled by `weight`."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


@seam
def rmsnorm_modulate(
    x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = RMS_EPS
) -> torch.Tensor:
    """adaLN: rms_norm(x) * (1 + scale) + shift; shift/scale broadcast against x."""
    return rms_norm.reference(x, weight, eps) * (1 + scale) + shift


@seam
def swiglu(x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
    """The SwiGLU hidden layer silu(x w1^T) * (x w3^T): x [..., C], w1/w3 [H, C] -> [..., H]."""
    hidden = F.silu(F.linear(x, w1), inplace=True)  # in place: two [..., H] buffers live, not four
    return hidden.mul_(F.linear(x, w3))


@seam
def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + gate * y (gate broadcasts)."""
    return x + gate * y


@seam
def gated_residual_rmsnorm_modulate(
    x: torch.Tensor,
    gate: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    eps: float = RMS_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain between a block's attention and its MLP, one read of x:
    x' = x + gate * y and rmsnorm_modulate(x', ...). Returns (x', modulated x')."""
    updated = gated_residual.reference(x, gate, y)
    return updated, rmsnorm_modulate.reference(updated, weight, shift, scale, eps)


@seam
def sigma_gate(
    x: torch.Tensor,
    lq: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    log_alpha: torch.Tensor,
    sigma: torch.Tensor,
) -> torch.Tensor:
    """Sigma-aware LQ injection: x + sigmoid([x, lq] W^T + b - exp(log_alpha) * sigma) * lq.

    x, lq: [B, Li, C]; weight: [N, 2C] with N = C (per token and channel, v1) or
    N = 1 (per token, v1.5); sigma: [B], its term is computed in float32.
    """
    content_logit = F.linear(torch.cat([x, lq], dim=-1), weight, bias)
    sigma_offset = -log_alpha.float().exp() * sigma.float().view(-1, 1, 1)
    # The float32 sigma term promotes; the stream keeps its own dtype (bf16 models stay bf16).
    return (x + torch.sigmoid(content_logit + sigma_offset) * lq).to(x.dtype)


@seam
def sigma_gate_split(
    x: torch.Tensor, lq: torch.Tensor, weight_x: torch.Tensor, lq_logit: torch.Tensor
) -> torch.Tensor:
    """The sigma gate with its step-invariant half precomputed:
    x + sigmoid(x W_x^T + lq_logit) * lq, where lq_logit = lq W_lq^T + b - exp(log_alpha) * sigma
    [B, Li, N] float32 (see `pid.model.lq_adapter.SigmaGate.lq_logit`) and W_x = W[:, :C]."""
    return (x + torch.sigmoid(F.linear(x, weight_x) + lq_logit) * lq).to(x.dtype)


# Pixels per chunk of the per-pixel work (PiT adaLN, compress, expand, MLP; the final layer):
# whole patches, so its transient tensors stay near 75 MiB in bf16 whatever the image size.
PIXEL_CHUNK = 1 << 17


def pixel_chunks(tokens: int, pixels_per_patch: int) -> list[slice]:
    """Slices of an image's `tokens` patches holding PIXEL_CHUNK pixels each (the last one fewer)."""
    step = max(1, PIXEL_CHUNK // pixels_per_patch)
    return [slice(start, min(start + step, tokens)) for start in range(0, tokens, step)]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [B, N, H, D] by angles given as cos/sin [N, D/2]."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)


def _norm_rope_into(out, source, norm_weight, rope, offset: int) -> None:
    """out[:, :, offset + n] = RoPE(RMSNorm(source[:, n])) for source [B, N, H, D], out [B, H, L, D]:
    a chunk of tokens at a time, so the float32 temporaries stay chunk-sized (per-token math)."""
    length, heads = source.shape[1], source.shape[2]
    step = max(1, PIXEL_CHUNK // heads)
    for start in range(0, length, step):
        rows = slice(start, min(start + step, length))
        normed = rms_norm.reference(source[:, rows], norm_weight)
        if rope is not None:
            normed = apply_rope(normed, rope[0][rows], rope[1][rows])
        out[:, :, offset + rows.start : offset + rows.stop] = normed.transpose(1, 2)


def _split_qkv_norm_rope(qkv, num_heads, q_norm_weight, k_norm_weight, rope):
    """Fused qkv [B, N, 3C] -> q, k, v as [B, H, N, D] with per-head RMSNorm and RoPE on q, k."""
    q, k, v, _, _ = joint_qkv(qkv, (q_norm_weight, k_norm_weight), rope, num_heads)
    return q, k, v


def joint_qkv(qkv_img, img_qk_norm, img_rope, num_heads, qkv_txt=None, txt_qk_norm=None, txt_rope=None,
              txt_key_mask=None):
    """The inputs of `attention`'s core: (q, k, v [B, H, Lt+Li, D], key mask [B, 1, 1, Lt+Li] or
    None, Lt); text tokens first, as the release concatenates them. Each stream's q and k get
    their per-head RMSNorm and RoPE, written straight into the joint tensors."""
    streams = [(qkv_img, img_qk_norm, img_rope)]
    if qkv_txt is not None:
        streams.insert(0, (qkv_txt, txt_qk_norm, txt_rope))
    batch, three_c = qkv_img.shape[0], qkv_img.shape[-1]
    head_dim = three_c // (3 * num_heads)
    total = sum(qkv.shape[1] for qkv, _, _ in streams)
    q, k, v = (qkv_img.new_empty(batch, num_heads, total, head_dim) for _ in range(3))
    offset = 0
    for qkv, (q_norm_weight, k_norm_weight), rope in streams:
        length = qkv.shape[1]
        q_in, k_in, v_in = qkv.view(batch, length, 3, num_heads, head_dim).unbind(2)
        _norm_rope_into(q, q_in, q_norm_weight, rope, offset)
        _norm_rope_into(k, k_in, k_norm_weight, rope, offset)
        v[:, :, offset : offset + length] = v_in.transpose(1, 2)
        offset += length
    text_len = 0 if qkv_txt is None else qkv_txt.shape[1]
    attn_mask = None
    if txt_key_mask is not None:
        image_keep = txt_key_mask.new_ones(txt_key_mask.shape[0], qkv_img.shape[1])
        attn_mask = torch.cat([txt_key_mask.bool(), image_keep.bool()], 1)[:, None, None, :]
    return q, k, v, attn_mask, text_len


def split_joint_output(out: torch.Tensor, text_len: int, with_text: bool):
    """[B, H, Lt+Li, D] -> (out_img [B, Li, C], out_txt [B, Lt, C] or None)."""
    out = out.transpose(1, 2).flatten(2)
    return out[:, text_len:], (out[:, :text_len] if with_text else None)


@seam
def attention(
    qkv_img: torch.Tensor,
    img_qk_norm: tuple[torch.Tensor, torch.Tensor],
    img_rope: tuple[torch.Tensor, torch.Tensor],
    num_heads: int,
    qkv_txt: Optional[torch.Tensor] = None,
    txt_qk_norm: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    txt_rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    txt_key_mask: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Joint attention over [text, image] straight from the fused qkv projections.

    qkv_img [B, Li, 3C], qkv_txt [B, Lt, 3C] (None: image-only attention, as in the
    PiT blocks). q and k get a per-stream, per-head RMSNorm and then RoPE
    (cos/sin tables [L, D/2]); scale 1/sqrt(D). `txt_key_mask` [B, Lt] (True = keep)
    hides padded caption tokens from every query; the release passes none.
    Returns (out_img [B, Li, C], out_txt [B, Lt, C] or None).
    """
    q, k, v, attn_mask, text_len = joint_qkv(
        qkv_img, img_qk_norm, img_rope, num_heads, qkv_txt, txt_qk_norm, txt_rope, txt_key_mask
    )
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return split_joint_output(out, text_len, qkv_txt is not None)


@seam
def patch_embed(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patch tokens: [B, 3, H, W] -> [B, Li, C], each patch flattened channel-major (c, i, j)."""
    patches = F.unfold(image, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
    return F.linear(patches, weight, bias)


@seam
def pixel_embed(
    image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, position_table: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """Pixel tokens: per-pixel linear 3 -> Dp plus the full-image position table [H*W, Dp],
    laid out patch-major: [B, 3, H, W] -> [B*Li, P2, Dp]."""
    batch, _, height, width = image.shape
    pixels = F.linear(image.permute(0, 2, 3, 1), weight, bias)
    pixels = pixels + position_table.view(height, width, -1)
    grid_h, grid_w = height // patch_size, width // patch_size
    pixels = pixels.view(batch, grid_h, patch_size, grid_w, patch_size, -1).permute(0, 1, 3, 2, 4, 5)
    return pixels.reshape(batch * grid_h * grid_w, patch_size * patch_size, -1)


@seam
def pixels_to_image(
    pixels: torch.Tensor,
    norm_weight: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    image_hw: tuple[int, int],
    patch_size: int,
) -> torch.Tensor:
    """Final layer + un-patchify: RMSNorm, linear Dp -> 3, [B*Li, P2, Dp] -> [B, 3, H, W].

    A chunk of patches at a time, so the float32 statistics never copy the whole image's pixels."""
    height, width = image_hw
    grid_h, grid_w = height // patch_size, width // patch_size
    per_image = pixels.view(-1, grid_h * grid_w, *pixels.shape[1:])  # chunks of each image's patches
    chunks = [F.linear(rms_norm.reference(per_image[:, rows], norm_weight), weight, bias)
              for rows in pixel_chunks(grid_h * grid_w, pixels.shape[1])]
    rgb = torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0]
    del chunks
    rgb = rgb.view(-1, grid_h, grid_w, patch_size, patch_size, rgb.shape[-1]).permute(0, 5, 1, 3, 2, 4)
    return rgb.reshape(rgb.shape[0], rgb.shape[1], height, width)


@seam
def pit_pixel_mlp(
    pixels: torch.Tensor,
    norm_weight: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    gate: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor,
    fc2_weight: torch.Tensor,
    fc2_bias: torch.Tensor,
) -> torch.Tensor:
    """The MLP half of a PiT block, per pixel: x + gate * fc2(gelu(fc1(adaLN(x)))).

    pixels [B*Li, P2, Dp]; shift/scale/gate [B*Li, P2, Dp] (views of the modulation);
    GELU is the exact (erf) form, as the release's nn.GELU().
    """
    hidden = rmsnorm_modulate.reference(pixels, norm_weight, shift, scale)
    hidden = F.linear(F.gelu(F.linear(hidden, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)
    return pixels + gate * hidden


@seam
def to_image(images: torch.Tensor, round_to_nearest: bool) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]: (x + 1) * 127.5, truncated toward
    zero (the release's writer) or rounded half to even."""
    scaled = (images.float().clamp(-1, 1) + 1) * 127.5
    if round_to_nearest:
        scaled = scaled.round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def sampler_update(
    x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, noise: Optional[torch.Tensor]
) -> torch.Tensor:
    """One distilled step: x0 = x_t - t * v (in float64, as the release), then re-noise
    to t_next with `noise`; returns x0 itself when `noise` is None (the last step).

    t, t_next: 0-dim float32 tensors (fractions in [0, 1]).
    """
    # In place on the float64 copies: two image-sized float64 buffers live, not four.
    x0 = x_t.to(torch.float64, copy=True).sub_(velocity.to(torch.float64, copy=True).mul_(t.double())).to(x_t.dtype)
    if noise is None:
        return x0
    return (1.0 - t_next) * x0 + t_next * noise


@seam
def unembed_update(
    pixels: torch.Tensor,
    norm_weight: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    image_hw: tuple[int, int],
    patch_size: int,
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    noise: Optional[torch.Tensor],
) -> torch.Tensor:
    """Final layer, un-patchify and sampler step in one: the next x_t (x0 on the last step)."""
    velocity = pixels_to_image.reference(pixels, norm_weight, weight, bias, image_hw, patch_size)
    return sampler_update(x_t, velocity.float(), t, t_next, noise)


# fp8 producers and GEMMs (pid.quant): e4m3 values with one float32 scale per row, as
# `pid.quant.fp8.quantize_rows` makes them; the consuming GEMMs are `pid.quant.fp8.scaled_mm`.
# pid.quant is imported inside the bodies: it imports the model, which imports this module.


class QuantizedRows(NamedTuple):
    """A producer's output handed to an fp8 GEMM (`pid.quant.FP8Linear`) instead of a tensor:
    e4m3 values [..., K], float32 scales [..., 1], and the dtype of the tensor it stands for."""

    values: torch.Tensor
    scales: torch.Tensor
    dtype: torch.dtype


@seam
def rmsnorm_modulate_fp8(
    x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = RMS_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """rmsnorm_modulate(x, ...) quantized per token for an fp8 GEMM: (e4m3 [..., C], float32 [..., 1])."""
    from pid.quant.fp8 import quantize_rows

    return quantize_rows(rmsnorm_modulate.reference(x, weight, shift, scale, eps))


@seam
def gated_residual_rmsnorm_modulate_fp8(
    x: torch.Tensor,
    gate: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    eps: float = RMS_EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gated_residual_rmsnorm_modulate with the modulated x' quantized per token:
    (x' in x's dtype, e4m3 [..., C], float32 [..., 1])."""
    from pid.quant.fp8 import quantize_rows

    updated, modulated = gated_residual_rmsnorm_modulate.reference(x, gate, y, weight, shift, scale, eps)
    return (updated, *quantize_rows(modulated))


@seam
def sigma_gate_fp8(
    x: torch.Tensor,
    lq: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor,
    log_alpha: torch.Tensor,
    sigma: torch.Tensor,
) -> torch.Tensor:
    """sigma_gate with its GEMM in fp8: [x, lq] quantized per token, weight e4m3 [N, 2C] with
    weight_scale float32 [N] (pid.quant.FP8Linear's), the logit rounded to x's dtype as eager's."""
    from pid.quant.fp8 import quantize_rows, scaled_mm

    batch, tokens, width = x.shape
    values, scales = quantize_rows(torch.cat([x, lq], dim=-1).view(-1, 2 * width))
    content_logit = scaled_mm(values, scales, weight, weight_scale, bias, x.dtype, backend="emulate")
    sigma_offset = -log_alpha.float().exp() * sigma.float().view(-1, 1, 1)
    return (x + torch.sigmoid(content_logit.view(batch, tokens, -1) + sigma_offset) * lq).to(x.dtype)


@seam
def patch_embed_fp8(
    image: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """patch_embed with its GEMM in fp8: patches quantized per token, weight e4m3 [C, 3*P*P] with
    weight_scale float32 [C]; [B, 3, H, W] -> [B, Li, C] in the image dtype."""
    from pid.quant.fp8 import quantize_rows, scaled_mm

    patches = F.unfold(image, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
    values, scales = quantize_rows(patches.reshape(-1, patches.shape[-1]))
    tokens = scaled_mm(values, scales, weight, weight_scale, bias, image.dtype, backend="emulate")
    return tokens.view(image.shape[0], patches.shape[1], -1)
