"""Where the image is cut: contiguous bands of patch rows, one band per rank.

Rank k holds patch rows [row_starts[k], row_starts[k+1]) of the patch grid, i.e. image rows
[row_start * p, row_stop * p) and the raster-order tokens [token_start, token_stop). Bands
differ by at most one row when the grid height does not divide by the group size.
Everything a band needs is cut from the full tensor (noise, x_t, LQ features, tables), so a
rank computes exactly the rows a single process would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RowSplit:
    image_hw: tuple[int, int]
    patch_size: int
    row_starts: tuple[int, ...]  # P + 1 patch-row boundaries
    rank: int  # index of this rank in the group

    @classmethod
    def even(cls, image_hw: tuple[int, int], patch_size: int, world: int, rank: int) -> "RowSplit":
        grid_h = image_hw[0] // patch_size
        if grid_h < world:
            raise ValueError(
                f"an image of {image_hw[0]} rows has {grid_h} patch rows, fewer than the {world} ranks: "
                f"each rank needs at least one row of {patch_size}-pixel patches"
            )
        return cls(tuple(image_hw), patch_size, tuple(k * grid_h // world for k in range(world + 1)), rank)

    @property
    def grid_w(self) -> int:
        return self.image_hw[1] // self.patch_size

    @property
    def token_counts(self) -> list[int]:
        """Image tokens per rank, in rank order."""
        starts = self.row_starts
        return [(stop - start) * self.grid_w for start, stop in zip(starts, starts[1:])]

    def tokens(self, rank: int) -> slice:
        return slice(self.row_starts[rank] * self.grid_w, self.row_starts[rank + 1] * self.grid_w)

    @property
    def local_tokens(self) -> slice:
        return self.tokens(self.rank)

    @property
    def local_pixel_rows(self) -> slice:
        p = self.patch_size
        return slice(self.row_starts[self.rank] * p, self.row_starts[self.rank + 1] * p)

    @property
    def local_hw(self) -> tuple[int, int]:
        rows = self.local_pixel_rows
        return (rows.stop - rows.start, self.image_hw[1])

    def band(self, image: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> this rank's rows [B, C, h, W]."""
        return image[..., self.local_pixel_rows, :].contiguous()

    def shard_context(self, context):
        """A full-image DecodeContext -> this rank's: LQ features, gate logits and the pixel
        position table cut to the band. RoPE tables stay whole (Ulysses attends over the full
        sequence; the ring path cuts its own rows); text is replicated."""
        cut = self.local_tokens
        height, width = self.image_hw
        rows = self.local_pixel_rows
        positions = context.pixel_positions.view(height, width, -1)[rows].reshape(-1, context.pixel_positions.shape[-1])
        return dataclasses.replace(
            context,
            image_hw=self.local_hw,
            grid_hw=(self.row_starts[self.rank + 1] - self.row_starts[self.rank], self.grid_w),
            lq_features=context.lq_features.select_tokens(cut),
            pit_lq_feature=None if context.pit_lq_feature is None else context.pit_lq_feature[:, cut],
            gate_lq_logits=None if context.gate_lq_logits is None else [logit[:, cut] for logit in context.gate_lq_logits],
            pixel_positions=positions,
        )

    def gather(self, band: torch.Tensor, group) -> torch.Tensor:
        """Each rank's [B, C, h_k, W] -> the full [B, C, H, W] on every rank (one all-gather;
        bands are padded to the tallest so the collective sees equal sizes)."""
        p = self.patch_size
        heights = [(stop - start) * p for start, stop in zip(self.row_starts, self.row_starts[1:])]
        tallest = max(heights)
        padded = band.new_zeros(*band.shape[:-2], tallest, band.shape[-1])
        padded[..., : band.shape[-2], :] = band
        received = [torch.empty_like(padded) for _ in heights]
        dist.all_gather(received, padded, group=group)
        return torch.cat([part[..., :height, :] for part, height in zip(received, heights)], dim=-2)
