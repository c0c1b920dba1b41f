"""Tiled decode: overlapping latent tiles, each decoded with the full caption, blended smoothly.

For outputs larger than device memory or than the trained resolution. The latent is cut
into overlapping tiles on latent-cell boundaries, so each tile's output covers exactly
its part of the full image. Every tile is decoded by the ordinary `Decoder.decode` with
the whole caption and with its slice of the full image's noise; that noise is drawn in
the release's order from one generator (seed or `generator`, as an untiled decode
draws it), so a seed gives every pixel the noise an untiled decode would give it.
Tile images are blended with a raised-cosine ramp across each overlap (weight 1
elsewhere, never 0), and divided by the summed weights.

The blended image and the noise fields live in host memory (float32, 4 bytes per
value); the decode device holds one tile's decode at a time.

A tiled decode is not the untiled image: each tile's network sees only its own patches
(attention, RoPE grid and pixel position table are per tile), so the tiles disagree
where they meet and the window hides the seam; tests/pid/sampling/test_tiled.py measures
that seam error on tiny networks (not yet with released weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

TileArg = Union[int, Sequence[int], "TileSpec"]


@dataclass(frozen=True)
class TileSpec:
    """Tile geometry in output pixels: `size` per side (int or (H, W)), `overlap` shared by
    neighbours (default: an eighth of the tile, at least one latent cell). Both must be
    multiples of the checkpoint's latent cell (sr_scale * latent down factor pixels)."""

    size: Union[int, tuple[int, int]]
    overlap: Optional[int] = None

    @classmethod
    def of(cls, tiles: TileArg) -> "TileSpec":
        """An int (tile size), a (size, overlap) pair, or a TileSpec."""
        if isinstance(tiles, TileSpec):
            return tiles
        if isinstance(tiles, int):
            return cls(tiles)
        if len(tiles) == 2:
            return cls(int(tiles[0]), int(tiles[1]))
        raise ValueError(f"tiles must be a tile size, a (size, overlap) pair or a TileSpec, got {tiles!r}")


@dataclass(frozen=True)
class Tile:
    """One tile: its latent cells and output pixels (start, stop) per axis, and blend weight."""

    latent_rows: tuple[int, int]
    latent_cols: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    weight: torch.Tensor  # [h, w] float32, > 0


def _cells(pixels: int, cell: int, what: str) -> int:
    if pixels <= 0 or pixels % cell:
        raise ValueError(f"tile {what} {pixels} px must be a positive multiple of the latent cell ({cell} px)")
    return pixels // cell


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced starts of tiles of `tile` cells covering `length` cells, neighbours
    sharing at least `overlap` cells."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(overlap_px: int) -> torch.Tensor:
    """sin^2 rising over `overlap_px` pixels; a neighbour's falling cos^2 ramp sums with it to 1."""
    position = (torch.arange(overlap_px, dtype=torch.float64) + 0.5) / overlap_px
    return torch.sin(position * (math.pi / 2)) ** 2


def _axis_weight(starts: list[int], index: int, tile: int, cell: int) -> torch.Tensor:
    weight = torch.ones(tile * cell, dtype=torch.float64)
    if index > 0:
        shared = (starts[index - 1] + tile - starts[index]) * cell
        weight[:shared] *= _ramp(shared)
    if index + 1 < len(starts):
        shared = (starts[index] + tile - starts[index + 1]) * cell
        weight[-shared:] *= _ramp(shared).flip(0)
    return weight


def plan_tiles(latent_hw: tuple[int, int], cell: int, spec: TileSpec) -> list[Tile]:
    """The tiles of a [zH, zW] latent whose cells decode to cell x cell pixels."""
    size = (spec.size, spec.size) if isinstance(spec.size, int) else tuple(spec.size)
    tile = tuple(min(_cells(s, cell, "size"), n) for s, n in zip(size, latent_hw))
    overlap_px = spec.overlap if spec.overlap is not None else max(cell, min(size) // 8 // cell * cell)
    overlap = _cells(overlap_px, cell, "overlap")
    axes = []
    for n, t in zip(latent_hw, tile):
        if t < n and overlap >= t:
            raise ValueError(f"tile overlap {overlap_px} px must be smaller than the tile ({t * cell} px)")
        starts = tile_starts(n, t, overlap)
        axes.append([(s, s + t, _axis_weight(starts, i, t, cell)) for i, s in enumerate(starts)])
    return [
        Tile((r0, r1), (c0, c1), (r0 * cell, r1 * cell), (c0 * cell, c1 * cell), torch.outer(wr, wc).float())
        for r0, r1, wr in axes[0]
        for c0, c1, wc in axes[1]
    ]


def _full_noise(decoder, noise, generator, seed, steps, shape) -> list[torch.Tensor]:
    """The full image's noise fields (initial x, then one eps per re-noising step) on the host."""
    if noise is not None:
        if len(noise) != steps or any(tuple(n.shape) != shape for n in noise):
            raise ValueError(f"noise must list {steps} tensors of the full image's shape {shape}")
        return [n.float().cpu() for n in noise]
    device = decoder.net.device
    generator = generator or torch.Generator(device=device).manual_seed(int(seed))
    return [torch.randn(shape, generator=generator, device=device).cpu() for _ in range(steps)]


@torch.no_grad()
def decode_tiled(decoder, latent, degrade_sigma, caption_embeds, tiles: TileArg, *, image_size=None, seed=None,
                 noise=None, steps: int = 4, generator=None, progress: bool = False, clamp: bool = True,
                 **tile_kwargs) -> torch.Tensor:
    """`Decoder.decode(..., tiles=...)`: latent [B, C, zH, zW] -> images [B, 3, H, W] float32 on the
    host, in [-1, 1] unless clamp=False. Arguments are Decoder.decode's; `noise`, when given,
    holds the full image's fields; `tile_kwargs` (caption_mask, timer) go to every tile's decode."""
    net = decoder.net
    if latent.dim() != 4:
        raise ValueError(f"latent must be [B, C, zH, zW], got shape {tuple(latent.shape)}")
    image_hw = net.image_size_for_latent(tuple(latent.shape[-2:]))
    if image_size is not None and tuple(image_size if not isinstance(image_size, int) else (image_size,) * 2) != image_hw:
        raise ValueError(f"a tiled decode covers the whole latent: image_size must be {image_hw} or None")
    cell = net.sr_scale * net.latent_down_factor
    plan = plan_tiles(tuple(latent.shape[-2:]), cell, TileSpec.of(tiles))
    shape = (latent.shape[0], 3, *image_hw)
    fields = _full_noise(decoder, noise, generator, seed, steps, shape)
    blended = torch.zeros(shape)
    total_weight = torch.zeros(image_hw)
    tile_iter = plan
    if progress:
        from tqdm.auto import tqdm

        tile_iter = tqdm(plan, desc="PiD tiles", unit="tile")
    for tile in tile_iter:
        rows, cols = slice(*tile.rows), slice(*tile.cols)
        image = decoder.decode(
            latent[:, :, slice(*tile.latent_rows), slice(*tile.latent_cols)],
            degrade_sigma,
            caption_embeds,
            noise=[field[:, :, rows, cols] for field in fields],
            steps=steps,
            clamp=False,
            **tile_kwargs,
        )
        blended[:, :, rows, cols] += image.float().cpu() * tile.weight
        total_weight[rows, cols] += tile.weight
    blended /= total_weight  # in place: the host holds no second full-size image
    return blended.clamp_(-1, 1) if clamp else blended
