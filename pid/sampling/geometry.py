"""Image-size and latent-shape geometry: the one place that knows how a latent maps to pixels.

A PiD decoder turns a latent [B, C, zH, zW] into an image [B, 3, H, W] with
H = zH * cell, cell = sr_scale * latent_spatial_down_factor output pixels per latent
cell. The network cuts the image into patch_size x patch_size patches, so H and W
must be multiples of both the cell and the patch: of `size_step` = lcm of the two.
Encoders with a fixed input size (DINOv2, SigLIP) allow one latent grid only.

Everything that checks a size, a latent shape or parses a size (the network, the
samplers, the backbone tables, the CLI, the benchmarks) calls this module.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

Hw = Union[int, Sequence[int]]

CONFIG_KEYS = ("lq_latent_channels", "sr_scale", "latent_spatial_down_factor")
# Every release uses 16x16 pixel patches.
RELEASE_PATCH_SIZE = 16


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def as_hw(value: Hw, what: str = "image_size") -> tuple[int, int]:
    """An int N (square) or an (H, W) pair of ints -> (H, W); ValueError naming `what` otherwise."""
    try:
        if isinstance(value, bool):
            raise TypeError
        pair = (value, value) if isinstance(value, int) else tuple(value)
        if len(pair) != 2 or any(isinstance(v, bool) for v in pair):
            raise TypeError
        height, width = (operator.index(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a (height, width) pair of ints, got {value!r}") from None
    return height, width


def parse_size_text(text: str) -> tuple[int, int]:
    """Command-line size 'WxH' (width first, as image tools write it) or 'N' -> (H, W)."""
    parts = text.lower().split("x")
    try:
        if len(parts) == 1:
            width = height = int(parts[0])
        elif len(parts) == 2:
            width, height = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"size must be WxH or N with integers, e.g. 1024x768 or 512, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def lq_alignment(
    latent_channels: int, patch_size: int, sr_scale: int, down_factor: int, unpatchify_factor: int
) -> tuple[int, int]:
    """How the LQ adapter puts a latent onto the patch grid -> (fold factor, adapter input channels).

    After an optional unpatchify by `unpatchify_factor`, one latent cell covers
    sr_scale * down_factor / unpatchify_factor output pixels. When that is smaller than a
    patch, fold_factor x fold_factor latent cells fold into one patch's channels; otherwise
    the fold factor is 1 and the latent is upsampled (nearest) to the grid.
    """
    if down_factor % unpatchify_factor or latent_channels % (unpatchify_factor**2):
        raise ValueError(
            f"lq_latent_unpatchify_factor {unpatchify_factor} must divide latent_spatial_down_factor "
            f"{down_factor} and its square must divide lq_latent_channels {latent_channels}"
        )
    channels = latent_channels // unpatchify_factor**2
    # Patch-grid cells per (unpatchified) latent cell along each axis.
    grid_to_latent = sr_scale * (down_factor // unpatchify_factor) / patch_size
    if grid_to_latent >= 1:
        return 1, channels
    fold = round(1 / grid_to_latent)
    if fold * grid_to_latent != 1:
        raise ValueError(f"latent cells per patch ({1 / grid_to_latent}) must be an integer")
    return fold, channels * fold * fold


@dataclass(frozen=True)
class LatentGeometry:
    """Latent channels and the pixel size of one latent cell, for one checkpoint or backbone."""

    channels: int
    sr_scale: int
    down_factor: int
    patch_size: int = RELEASE_PATCH_SIZE
    fixed_latent_hw: Optional[tuple[int, int]] = None  # encoders that resize every input
    label: str = "this checkpoint"

    @property
    def cell(self) -> int:
        """Output pixels per latent cell, per axis."""
        return self.sr_scale * self.down_factor

    @property
    def size_step(self) -> int:
        """Output sizes are multiples of this: of the patch size and of the latent cell."""
        return math.lcm(self.patch_size, self.cell)

    def nearest_sizes(self, size: int) -> tuple[int, ...]:
        """The valid sizes next to `size` (one or two of them), for error messages."""
        step = self.size_step
        below, above = (size // step) * step, -(-size // step) * step
        return tuple(dict.fromkeys(s for s in (below, above) if s > 0)) or (step,)

    def _size_hint(self, height: int, width: int) -> str:
        hints = []
        for axis, value in (("H", height), ("W", width)):
            if value % self.size_step:
                hints.append(f"{axis} {value} -> {' or '.join(map(str, self.nearest_sizes(value)))}")
        return f" (nearest valid: {', '.join(hints)})" if hints else ""

    def check_image_hw(self, image_hw: Hw, what: str = "image_size") -> tuple[int, int]:
        """(H, W) after checking that a whole number of patches and latent cells covers it."""
        height, width = as_hw(image_hw, what)
        if height <= 0 or width <= 0:
            raise ValueError(f"{what} {height}x{width} (HxW) must be positive multiples of {self.size_step}")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"{what} {height}x{width} (HxW) is not a multiple of the {self.patch_size}-pixel patch size: H and "
                f"W must be positive multiples of {self.patch_size}{self._size_hint(height, width)}"
            )
        if height % self.cell or width % self.cell:
            raise ValueError(
                f"{what} {height}x{width} (HxW) is not a multiple of {self.cell}: {self.label} decodes one latent "
                f"cell to {self.cell}x{self.cell} pixels (sr_scale {self.sr_scale} x latent down factor "
                f"{self.down_factor}), so H and W must be multiples of {self.cell}{self._size_hint(height, width)}"
            )
        if self.fixed_latent_hw is not None and (height // self.cell, width // self.cell) != self.fixed_latent_hw:
            native = (self.fixed_latent_hw[0] * self.cell, self.fixed_latent_hw[1] * self.cell)
            raise ValueError(
                f"{self.label} always yields a {self.fixed_latent_hw[0]}x{self.fixed_latent_hw[1]} latent grid (its "
                f"encoder resizes every input), so the output must be {native[0]}x{native[1]}, got {height}x{width}"
            )
        return height, width

    def latent_shape(self, image_hw: Hw) -> tuple[int, int, int]:
        """(C, zH, zW) of the latent that decodes to an image of size image_hw (checked)."""
        height, width = self.check_image_hw(image_hw)
        return (self.channels, height // self.cell, width // self.cell)

    def image_hw_for_latent(self, latent_hw: Hw) -> tuple[int, int]:
        """(H, W) that a latent grid (zH, zW) decodes to, checked; a full latent shape works too."""
        if not isinstance(latent_hw, int) and len(latent_hw) in (3, 4):
            latent_hw = tuple(latent_hw)[-2:]
        latent_h, latent_w = as_hw(latent_hw, "latent_hw")
        if latent_h <= 0 or latent_w <= 0:
            raise ValueError(f"latent grid must be positive, got {latent_h}x{latent_w}")
        return self.check_image_hw((latent_h * self.cell, latent_w * self.cell), "the latent's image size")

    def check_latent(
        self, latent: Any, image_hw: Optional[Hw] = None, batch: Optional[int] = None, what: str = "latent"
    ) -> tuple[int, int]:
        """Check a latent (tensor or shape) [B, C, zH, zW] and return the (H, W) it decodes to.

        Without `image_hw` the size follows from the latent grid; with it, the latent must
        be exactly [B, C, H / cell, W / cell]. Errors name the expected shape.
        """
        if latent is None:
            raise ValueError(f"PiD decodes a latent: pass {what} [B, C, zH, zW]")
        shape = tuple(int(s) for s in (latent.shape if hasattr(latent, "shape") else latent))
        if len(shape) != 4:
            raise ValueError(f"{what} must be [B, C, zH, zW], got shape {_shape_text(shape)}")
        if batch is not None and shape[0] != batch:
            raise ValueError(f"batch mismatch: {what} has batch {shape[0]}, expected {batch}")
        if image_hw is None:
            if shape[2] <= 0 or shape[3] <= 0:
                raise ValueError(f"{what} has an empty grid: shape {_shape_text(shape)}")
            image_hw = (shape[2] * self.cell, shape[3] * self.cell)
        height, width = self.check_image_hw(image_hw)
        expected = (self.channels, height // self.cell, width // self.cell)
        if shape[1:] != expected:
            got_hw = f"{shape[2] * self.cell}x{shape[3] * self.cell}"
            channels = f"{what} has {shape[1]} channels, expected {self.channels}: " if shape[1] != self.channels else ""
            raise ValueError(
                f"{channels}{what} shape {_shape_text(shape)} does not fit {self.label} at image size "
                f"{height}x{width}: expected [B, {expected[0]}, {expected[1]}, {expected[2]}] ({self.channels} "
                f"channels; a {shape[2]}x{shape[3]} latent decodes to {got_hw})"
            )
        return height, width


def geometry_from_config(config: Any, label: str = "this checkpoint") -> LatentGeometry:
    """The geometry of a network config: a kwargs mapping, a manifest (its 'config') or an object."""
    if isinstance(config, Mapping) and isinstance(config.get("config"), Mapping):
        config = config["config"]
    get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
    values = {key: get(key) for key in CONFIG_KEYS}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}; need {', '.join(CONFIG_KEYS)} or a backbone name")
    patch_size = get("patch_size") or RELEASE_PATCH_SIZE
    return LatentGeometry(*(int(values[key]) for key in CONFIG_KEYS), patch_size=int(patch_size), label=label)
