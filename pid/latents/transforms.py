"""Conversions into PiD's latent space, as pure torch functions: layouts (Flux.2's 2x2
packing, packed pipeline tokens), each backbone's normalization of its encoder output, and
the degradation noising its decoder was trained with. The conventions themselves (which
backbone uses which) live in `pid.latents.backbones`; docs/latents.md has tables and examples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from pid.latents.backbones import (
    FLOW_MATCHING,
    NORM_AFFINE,
    NORM_PATCHIFY_BATCHNORM,
    NORM_PER_CHANNEL,
    NORM_PER_POSITION,
    NORM_TOKEN_LAYERNORM,
    VARIANCE_PRESERVING,
    BackboneSpec,
    check_latent_for,
    get_backbone,
)
from pid.sampling.geometry import Hw, as_hw


# ---------------------------------------------------------------------------
# Layout conversions
# ---------------------------------------------------------------------------


def pack_2x2(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, 2h, 2w] -> [B, 4C, h, w]; pixel offset (i, j) of each 2x2 block goes to channel c*4 + 2i + j.

    This is Flux.2's patchify (and the layout of Flux/Qwen packed tokens).
    """
    b, c, hh, ww = latent.shape
    if hh % 2 or ww % 2:
        raise ValueError(f"pack_2x2 needs an even latent grid, got {hh}x{ww}")
    blocks = latent.reshape(b, c, hh // 2, 2, ww // 2, 2)  # b, c, y, i, x, j
    return blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, hh // 2, ww // 2)


def unpack_2x2(latent: torch.Tensor) -> torch.Tensor:
    """[B, 4C, h, w] -> [B, C, 2h, 2w]; inverse of pack_2x2 (channel c*4 + 2i + j -> offset (i, j))."""
    b, c4, h, w = latent.shape
    if c4 % 4:
        raise ValueError(f"unpack_2x2 needs a channel count divisible by 4, got {c4}")
    blocks = latent.reshape(b, c4 // 4, 2, 2, h, w)  # b, c, i, j, y, x
    return blocks.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)


def tokens_to_grid(tokens: torch.Tensor, grid_hw: Hw | None = None) -> torch.Tensor:
    """Raster-order tokens [B, h*w, C] -> [B, C, h, w]. ``grid_hw`` defaults to a square grid."""
    b, n, c = tokens.shape
    if grid_hw is None:
        side = math.isqrt(n)
        grid_hw = (side, side)
    h, w = as_hw(grid_hw, "grid_hw")
    if h * w != n:
        raise ValueError(f"{n} tokens do not fill a {h}x{w} grid")
    return tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)


def grid_to_tokens(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> raster-order tokens [B, h*w, C]; inverse of tokens_to_grid."""
    b, c, h, w = latent.shape
    return latent.permute(0, 2, 3, 1).reshape(b, h * w, c)


def unpack_packed_tokens(tokens: torch.Tensor, generated_hw: Hw, vae_down_factor: int = 8) -> torch.Tensor:
    """Flux / Qwen-Image pipeline tokens [B, (h/2)*(w/2), 4C] -> latent [B, C, h, w].

    ``generated_hw`` is the image size the generator was asked for; like
    diffusers, h = 2 * (H // (2 * vae_down_factor)). Each token holds a 2x2
    block of the latent, channel c*4 + 2i + j at offset (i, j).
    """
    H, W = as_hw(generated_hw, "generated_hw")
    step = 2 * vae_down_factor
    return unpack_2x2(tokens_to_grid(tokens, (H // step, W // step)))


# ---------------------------------------------------------------------------
# Normalization: raw encoder output -> PiD latent
# ---------------------------------------------------------------------------


def _wide(x: torch.Tensor) -> torch.Tensor:
    # Normalize in at least float32 (bf16 statistics would add visible error).
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _stat(values: Any, like: torch.Tensor, count: int, what: str) -> torch.Tensor:
    stat = torch.as_tensor(values, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
    if stat.numel() != count:
        raise ValueError(f"{what} needs {count} values, got {stat.numel()}")
    return stat


def normalize_affine(raw: torch.Tensor, scaling_factor: float, shift_factor: float) -> torch.Tensor:
    """Flux / SD3 / SDXL / Z-Image: scaling_factor * (raw - shift_factor)."""
    return (scaling_factor * (_wide(raw) - shift_factor)).to(raw.dtype)


def denormalize_affine(latent: torch.Tensor, scaling_factor: float, shift_factor: float) -> torch.Tensor:
    """Inverse of normalize_affine: latent / scaling_factor + shift_factor."""
    return (_wide(latent) / scaling_factor + shift_factor).to(latent.dtype)


def normalize_per_channel(raw: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Qwen-Image: (raw - mean[c]) / std[c] for raw [B, C, h, w]."""
    c = raw.shape[1]
    m = _stat(mean, raw, c, "mean").view(1, c, 1, 1)
    s = _stat(std, raw, c, "std").view(1, c, 1, 1)
    return ((_wide(raw) - m) / s).to(raw.dtype)


def denormalize_per_channel(latent: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Inverse of normalize_per_channel: latent * std[c] + mean[c]."""
    c = latent.shape[1]
    m = _stat(mean, latent, c, "mean").view(1, c, 1, 1)
    s = _stat(std, latent, c, "std").view(1, c, 1, 1)
    return (_wide(latent) * s + m).to(latent.dtype)


def normalize_flux2(
    raw: torch.Tensor, bn_running_mean: Any, bn_running_var: Any, eps: float = 1e-4
) -> torch.Tensor:
    """Flux.2: raw VAE mean [B, 32, 2h, 2w] -> PiD latent [B, 128, h, w].

    Patchify 2x2, then eval-mode BatchNorm without affine:
    (x - running_mean) / sqrt(running_var + eps). The 128 running statistics exist
    only inside the Flux.2 VAE checkpoint (diffusers ``vae.bn.running_mean`` /
    ``vae.bn.running_var``; BFL ``ae.safetensors`` keys ``bn.running_mean`` /
    ``bn.running_var``), so they are arguments here. eps is the VAE's
    batch_norm_eps, 1e-4.
    """
    packed = _wide(pack_2x2(raw))
    c = packed.shape[1]
    m = _stat(bn_running_mean, packed, c, "bn_running_mean").view(1, c, 1, 1)
    v = _stat(bn_running_var, packed, c, "bn_running_var").view(1, c, 1, 1)
    return ((packed - m) / torch.sqrt(v + eps)).to(raw.dtype)


def denormalize_flux2(
    latent: torch.Tensor, bn_running_mean: Any, bn_running_var: Any, eps: float = 1e-4
) -> torch.Tensor:
    """Inverse of normalize_flux2: PiD latent [B, 128, h, w] -> raw [B, 32, 2h, 2w] for the VAE decoder."""
    c = latent.shape[1]
    m = _stat(bn_running_mean, latent, c, "bn_running_mean").view(1, c, 1, 1)
    v = _stat(bn_running_var, latent, c, "bn_running_var").view(1, c, 1, 1)
    return unpack_2x2(_wide(latent) * torch.sqrt(v + eps) + m).to(latent.dtype)


def normalize_per_position(features: torch.Tensor, mean: Any, var: Any, eps: float = 1e-5) -> torch.Tensor:
    """DINOv2 (RAE): (features - mean[c, y, x]) / sqrt(var[c, y, x] + eps).

    ``mean`` / ``var`` are the RAE stat file's tensors, [C, h, w] (or [1, C, h, w]),
    matching the feature grid [B, C, h, w].
    """
    shape = features.shape[1:]
    m = _stat(mean, features, shape.numel(), "mean").view(1, *shape)
    v = _stat(var, features, shape.numel(), "var").view(1, *shape)
    return ((_wide(features) - m) / torch.sqrt(v + eps)).to(features.dtype)


def normalize_token_layernorm(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """SigLIP (Scale-RAE): LayerNorm over channels, no affine, for a grid [B, C, h, w]."""
    tokens = _wide(features).permute(0, 2, 3, 1)
    normed = F.layer_norm(tokens, (tokens.shape[-1],), eps=eps)
    return normed.permute(0, 3, 1, 2).to(features.dtype)


def raw_to_pid_latent(
    backbone: str | BackboneSpec,
    raw: torch.Tensor,
    *,
    stat_mean: Any = None,
    stat_var: Any = None,
) -> torch.Tensor:
    """Encoder output -> the latent PiD was trained on (what the release's tokenizer encode returns).

    ``raw`` is the backbone encoder's own output for an LQ image:

    * flux / zimage / sd3 / sdxl / qwenimage: VAE posterior mean [B, C, h, w]
      (``vae.encode(x).latent_dist.mean``; a 5-D [B, C, 1, h, w] Qwen latent is accepted).
    * flux2: VAE posterior mean [B, 32, 2h, 2w]; pass the VAE's BatchNorm
      running statistics as ``stat_mean`` / ``stat_var`` (128 values each).
    * dinov2: feature grid [B, 768, 32, 32] (or tokens [B, 1024, 768]); pass the
      RAE stat file's ``mean`` / ``var`` ([768, 32, 32]).
    * siglip: pre-final-LayerNorm features [B, 1152, 16, 16] (or tokens [B, 256, 1152]).

    Returns [B, lq_latent_channels, zH, zW] in ``raw``'s dtype.
    """
    spec = get_backbone(backbone)
    if raw.ndim == 5:
        if raw.shape[2] != 1:
            raise ValueError(f"expected a single frame, got 5-D latent {tuple(raw.shape)}")
        raw = raw[:, :, 0]
    if raw.ndim == 3 and spec.normalization in (NORM_PER_POSITION, NORM_TOKEN_LAYERNORM):
        raw = tokens_to_grid(raw)
    if raw.ndim != 4 or raw.shape[1] != spec.raw_latent_channels:
        raise ValueError(
            f"{spec.name} raw latent must be [B, {spec.raw_latent_channels}, h, w], got {tuple(raw.shape)}"
        )
    needs_stats = spec.normalization in (NORM_PATCHIFY_BATCHNORM, NORM_PER_POSITION)
    if needs_stats and (stat_mean is None or stat_var is None):
        raise ValueError(f"{spec.name} normalization needs stat_mean and stat_var: {spec.stats_source}")

    if spec.normalization == NORM_AFFINE:
        return normalize_affine(raw, spec.scaling_factor, spec.shift_factor)
    if spec.normalization == NORM_PER_CHANNEL:
        return normalize_per_channel(raw, spec.channel_mean, spec.channel_std)
    if spec.normalization == NORM_PATCHIFY_BATCHNORM:
        return normalize_flux2(raw, stat_mean, stat_var, spec.norm_eps)
    if spec.normalization == NORM_PER_POSITION:
        return normalize_per_position(raw, stat_mean, stat_var, spec.norm_eps)
    return normalize_token_layernorm(raw, spec.norm_eps)


def pipeline_latent_to_pid(
    backbone: str | BackboneSpec,
    output: torch.Tensor,
    generated_hw: Hw,
    *,
    bn_running_mean: Any = None,
    bn_running_var: Any = None,
) -> torch.Tensor:
    """A diffusers pipeline's ``output_type="latent"`` result (or a step-callback latent) -> PiD latent.

    Diffusers already returns latents in the normalized space PiD uses, except
    FLUX.2-klein (raw 32-channel latent), so this mostly unpacks tokens:

    * flux, qwenimage: packed tokens [B, (h/2)*(w/2), 64] -> [B, 16, h, w].
    * flux2: packed tokens [B, h*w, 128] -> [B, 128, h, w]. A 4-D 32-channel latent
      (Flux2KleinPipeline's final output) is patchified and BN-normalized, which
      needs ``bn_running_mean`` / ``bn_running_var`` from ``pipeline.vae.bn``.
    * sd3, sdxl, zimage: already [B, C, h, w]; returned unchanged.

    ``generated_hw`` is the (H, W) the pipeline was run at (the LQ image size).
    SDXL intermediates also need euler_to_vp. The RAE backbones are not diffusers
    pipelines: their samples are already PiD latents (siglip tokens: tokens_to_grid).
    """
    spec = get_backbone(backbone)
    if spec.normalization in (NORM_PER_POSITION, NORM_TOKEN_LAYERNORM):
        raise ValueError(
            f"{spec.name} is not a diffusers pipeline; its generator's samples are already PiD latents "
            f"(use tokens_to_grid for [B, N, C] tokens)"
        )
    if output.ndim == 5 and output.shape[2] == 1:
        output = output[:, :, 0]
    if output.ndim == 3:
        if spec.normalization == NORM_PATCHIFY_BATCHNORM:
            h, w = as_hw(generated_hw, "generated_hw")
            cell = spec.latent_spatial_down_factor
            output = tokens_to_grid(output, (h // cell, w // cell))
        else:
            output = unpack_packed_tokens(output, generated_hw, spec.raw_down_factor)
    elif spec.normalization == NORM_PATCHIFY_BATCHNORM and output.ndim == 4 and output.shape[1] == 32:
        if bn_running_mean is None or bn_running_var is None:
            raise ValueError("a raw 32-channel Flux.2 latent needs bn_running_mean / bn_running_var (pipeline.vae.bn)")
        output = normalize_flux2(output, bn_running_mean, bn_running_var, spec.norm_eps)
    check_latent_for(spec, output)
    return output


# ---------------------------------------------------------------------------
# Noise level: scheduler frame -> PiD frame, and degradation noising
# ---------------------------------------------------------------------------


def euler_to_vp(latent: torch.Tensor, sigma_euler: float | torch.Tensor) -> tuple[torch.Tensor, Any]:
    """SDXL: Euler-frame state x0 + s_eu * eps -> PiD's VP frame.

    Both the latent and sigma are divided by sqrt(s_eu^2 + 1), which gives
    sqrt(1 - s_vp^2) * x0 + s_vp * eps with s_vp = s_eu / sqrt(s_eu^2 + 1) in [0, 1)
    (the same factor diffusers' EulerDiscreteScheduler.scale_model_input applies).
    ``sigma_euler`` is a float or a per-sample tensor [B].
    """
    if isinstance(sigma_euler, torch.Tensor):
        denom = torch.sqrt(sigma_euler.double() ** 2 + 1.0)
        scale = denom.reshape(-1, *([1] * (latent.ndim - 1))).to(latent.dtype)
        return latent / scale, (sigma_euler.double() / denom).to(sigma_euler.dtype)
    denom = math.sqrt(float(sigma_euler) ** 2 + 1.0)
    return latent / denom, float(sigma_euler) / denom


def scheduler_state_to_pid(
    backbone: str | BackboneSpec, latent: torch.Tensor, sigma: float | torch.Tensor
) -> tuple[torch.Tensor, Any]:
    """Map a generator's (latent, scheduler sigma) to PiD's (lq_latent, degrade_sigma).

    Flow-matching backbones already hold (1 - s) * x0 + s * eps with s in [0, 1],
    so degrade_sigma is the scheduler sigma as is. SDXL goes through euler_to_vp.
    """
    if get_backbone(backbone).noising == VARIANCE_PRESERVING:
        return euler_to_vp(latent, sigma)
    return latent, sigma


def _noising_form(backbone_or_form: str | BackboneSpec) -> str:
    if backbone_or_form in (FLOW_MATCHING, VARIANCE_PRESERVING):
        return backbone_or_form
    return get_backbone(backbone_or_form).noising


def noising_coefficients(backbone_or_form: str | BackboneSpec, sigma: float) -> tuple[float, float]:
    """(a, b) with noised = a * x0 + b * eps: (1 - s, s) for flow matching, (sqrt(1 - s^2), s) for SDXL."""
    s = float(sigma)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"degrade sigma must lie in [0, 1], got {s}")
    if _noising_form(backbone_or_form) == VARIANCE_PRESERVING:
        return math.sqrt(max(0.0, 1.0 - s * s)), s
    return 1.0 - s, s


def add_degradation_noise(
    backbone_or_form: str | BackboneSpec,
    clean_latent: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise a clean PiD latent [B, C, zH, zW] at degrade_sigma the way the backbone's decoder was trained.

    Flow matching: (1 - s) * x0 + s * eps. SDXL (variance preserving):
    sqrt(1 - s^2) * x0 + s * eps. ``sigma`` is a float or a per-sample tensor [B]
    in [0, 1]. ``noise`` defaults to a standard normal draw of the latent's shape,
    dtype and device from ``generator``; with a float sigma of 0 the latent is
    returned untouched and no noise is drawn, as in the release. Feed the same
    sigma to PiD as degrade_sigma.
    """
    form = _noising_form(backbone_or_form)
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(device=clean_latent.device, dtype=torch.float32)
        if bool(((s < 0) | (s > 1)).any()):
            raise ValueError(f"degrade sigma must lie in [0, 1], got {sigma.tolist()}")
        view = (-1, *([1] * (clean_latent.ndim - 1)))
        a = torch.sqrt(torch.clamp(1.0 - s * s, min=0.0)) if form == VARIANCE_PRESERVING else 1.0 - s
        a, b = a.reshape(view).to(clean_latent.dtype), s.reshape(view).to(clean_latent.dtype)
    else:
        a, b = noising_coefficients(form, sigma)
        if b == 0.0 and noise is None:
            return clean_latent  # the release draws no noise at sigma 0
    if noise is None:
        noise = torch.randn(
            clean_latent.shape, generator=generator, device=clean_latent.device, dtype=clean_latent.dtype
        )
    elif noise.shape != clean_latent.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from latent shape {tuple(clean_latent.shape)}")
    return a * clean_latent + b * noise
