"""Decoded images in [-1, 1] -> uint8 arrays and PIL images."""

from __future__ import annotations

import torch

from pid import seams

ROUNDINGS = ("release", "nearest")


def to_uint8(images: torch.Tensor, rounding: str = "release") -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3] on the same device.

    rounding="release" truncates (x + 1) * 127.5 toward zero, as the release's
    image writer does, so saved files match it byte for byte; "nearest" rounds
    half to even instead.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    return seams.to_image(images, rounding == "nearest")


def to_pil(images: torch.Tensor, rounding: str = "release") -> list:
    """[B, 3, H, W] in [-1, 1] -> a list of B PIL RGB images."""
    from PIL import Image

    return [Image.fromarray(array.numpy()) for array in to_uint8(images, rounding).cpu()]
