"""Input checks with messages that say what was expected.

Shape checks are cheap and run on every forward. Value checks (finite, sigma
range) read tensor values, which synchronises a GPU, so they run once per
decode in `pid.Decoder`, not inside the network.
"""

from __future__ import annotations

from typing import Optional

import torch


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) if t.dim() else "scalar"


def check_image_size(net, image_hw: tuple[int, int]) -> None:
    height, width = image_hw
    if height <= 0 or width <= 0 or height % net.patch_size or width % net.patch_size:
        raise ValueError(f"image size {height}x{width} (HxW) must be positive multiples of {net.patch_size}")
    cell = net.sr_scale * net.latent_down_factor
    if height % cell or width % cell:
        raise ValueError(
            f"image size {height}x{width} (HxW) is not covered by whole latent cells: this checkpoint "
            f"decodes one latent cell to {cell}x{cell} pixels (sr_scale {net.sr_scale} x latent down factor "
            f"{net.latent_down_factor}), so H and W must be multiples of {cell}"
        )


def check_latent(net, latent: Optional[torch.Tensor], image_hw: tuple[int, int], batch: Optional[int] = None) -> None:
    if latent is None:
        raise ValueError("PiD decodes a latent: pass lq_latent [B, C, zH, zW]")
    if latent.dim() != 4:
        raise ValueError(f"latent must be [B, C, zH, zW], got shape {_shape(latent)}")
    expected = net.expected_latent_shape(image_hw)
    if tuple(latent.shape[1:]) != expected:
        got_hw = net.image_size_for_latent(tuple(latent.shape[-2:]))
        raise ValueError(
            f"latent shape {_shape(latent)} does not fit this checkpoint at image size "
            f"{image_hw[0]}x{image_hw[1]}: expected [B, {expected[0]}, {expected[1]}, {expected[2]}] "
            f"({net.latent_channels} channels; a {latent.shape[-2]}x{latent.shape[-1]} latent decodes to "
            f"{got_hw[0]}x{got_hw[1]})"
        )
    if batch is not None and latent.shape[0] != batch:
        raise ValueError(f"batch mismatch: latent has batch {latent.shape[0]}, expected {batch}")


def check_captions(net, y: torch.Tensor, batch: int, caption_mask: Optional[torch.Tensor]) -> None:
    txt_dim = net.config["txt_embed_dim"]
    if y.dim() != 3 or y.shape[-1] != txt_dim or y.shape[1] < 1:
        raise ValueError(f"caption embeddings must be [B, L, {txt_dim}] with L >= 1, got shape {_shape(y)}")
    if y.shape[0] != batch:
        raise ValueError(f"batch mismatch: caption embeddings have batch {y.shape[0]}, expected {batch}")
    if caption_mask is not None and tuple(caption_mask.shape) != tuple(y.shape[:2]):
        raise ValueError(f"caption_mask must be [B, L] = {_shape(y[..., 0])}, got {_shape(caption_mask)}")


def check_per_sample(name: str, value: torch.Tensor, batch: int) -> None:
    if value is None:
        raise ValueError(f"{name} is required, one value per sample [B]")
    if value.numel() not in (1, batch):
        raise ValueError(f"{name} must hold 1 or B={batch} values, got shape {_shape(value)}")


def check_forward_inputs(net, x, t, y, lq_latent, degrade_sigma, caption_mask) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x_t must be [B, 3, H, W], got shape {_shape(x)}")
    batch = x.shape[0]
    image_hw = tuple(x.shape[-2:])
    check_image_size(net, image_hw)
    check_latent(net, lq_latent, image_hw, batch)
    check_captions(net, y, batch, caption_mask)
    check_per_sample("t", t, batch)
    check_per_sample("degrade_sigma", degrade_sigma, batch)


def check_finite(name: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN/Inf value(s)")


def check_sigma_range(sigma: torch.Tensor) -> None:
    if ((sigma < 0) | (sigma > 1)).any():
        raise ValueError(f"degrade_sigma must lie in [0, 1] (0 = clean latent), got {sigma.tolist()}")
