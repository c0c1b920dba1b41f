"""Position and time encodings of the PiD network (all step-invariant except the timestep).

RoPE tables are returned as (cos, sin), each [L, D/2], for rotating adjacent
channel pairs (see `pid.seams.apply_rope`).
"""

from __future__ import annotations

import math

import torch

# Both RoPE axes span [0, ROPE_POSITION_SPAN] whatever the grid size.
ROPE_POSITION_SPAN = 16.0
TIMESTEP_FEATURES = 256
# The release's timestep embedding uses a maximum period of 10, not 10000.
TIMESTEP_MAX_PERIOD = 10.0


def timestep_embedding(t: torch.Tensor, features: int = TIMESTEP_FEATURES) -> torch.Tensor:
    """Sinusoidal features of t (already x1000) [B] -> [B, features], cos half first."""
    half = features // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / half
    freqs = torch.exp(-math.log(TIMESTEP_MAX_PERIOD) * exponent)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def rope_2d(
    head_dim: int,
    grid_h: int,
    grid_w: int,
    ref_grid_h: int,
    ref_grid_w: int,
    ntk_aware: bool = True,
    theta: float = 10000.0,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D RoPE over a grid_h x grid_w patch grid, row-major tokens.

    Pair 2k rotates with the column position, pair 2k+1 with the row position, both
    at frequency base**(-4k/head_dim). NTK-aware mode raises each axis's base to
    theta * (grid / ref_grid) ** (a / (a - 2)) with a = head_dim // 2, so the
    reference grid keeps the plain base.
    """
    axis_dim = head_dim // 2

    def axis_base(grid: int, ref_grid: int) -> float:
        if not ntk_aware or axis_dim <= 2:
            return theta
        return theta * (grid / ref_grid) ** (axis_dim / (axis_dim - 2))

    exponents = torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim
    freqs_x = 1.0 / (axis_base(grid_w, ref_grid_w) ** exponents)
    freqs_y = 1.0 / (axis_base(grid_h, ref_grid_h) ** exponents)
    ys, xs = torch.meshgrid(
        torch.linspace(0, ROPE_POSITION_SPAN, grid_h, device=device),
        torch.linspace(0, ROPE_POSITION_SPAN, grid_w, device=device),
        indexing="ij",
    )
    angles_x = torch.outer(xs.reshape(-1), freqs_x)
    angles_y = torch.outer(ys.reshape(-1), freqs_y)
    angles = torch.stack([angles_x, angles_y], dim=-1).reshape(grid_h * grid_w, -1)
    return torch.cos(angles), torch.sin(angles)


def rope_text(head_dim: int, length: int, theta: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D RoPE for caption tokens at integer positions 0..length-1."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.arange(length, device=device).float()[:, None] * freqs[None]
    return torch.cos(angles), torch.sin(angles)


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / (10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim // 2)))
    angles = positions[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def pixel_position_table(dim: int, height: int, width: int, device=None, dtype=torch.float64,
                         band_pixels: int = 1 << 17) -> torch.Tensor:
    """Fixed 2-D sin-cos over every pixel of the image, [H*W, dim] in `dtype`, row-major.

    The first half of the channels encodes the column, the second half the row. Computed in
    float64 a band of image rows (about `band_pixels` pixels) at a time and cast, so the
    float64 table of a whole image (1 GiB at 2048²) never exists."""
    table = torch.empty(height * width, dim, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=torch.float64, device=device)
    rows_per_band = max(1, band_pixels // width)
    for top in range(0, height, rows_per_band):
        band_rows, band_cols = torch.meshgrid(
            torch.arange(top, min(top + rows_per_band, height), dtype=torch.float64, device=device), cols, indexing="ij"
        )
        band = torch.cat([_sincos_1d(dim // 2, band_cols.reshape(-1)), _sincos_1d(dim // 2, band_rows.reshape(-1))], dim=1)
        table[top * width : top * width + band.shape[0]] = band
    return table
