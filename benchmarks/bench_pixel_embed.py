"""Benchmark pixel_embed: pixel tokens, per-pixel linear 3 -> Dp + the position table, patch-major.

Cases (bf16, batch 1, widths of the released v1 config), per output size S of
pid.bench.ops.SIZES: pixel_embed_<S>, image [1, 3, S, S] -> [(S/P)², P², Dp]. Memory-bound:
bytes = the image and the position table read once, the pixel tokens written once.

Usage: python benchmarks/bench_pixel_embed.py [--cases pixel_embed_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/pixel_embed.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "pixel_embed"
BF16 = 2


def _case(height: int, width: int, patch: int, channels: int, out_dim: int) -> ops.OpCase:
    pixels = height * width

    def make_args(device, generator):
        return [ops.randn(generator, 1, channels, height, width), ops.randn(generator, out_dim, channels),
                ops.randn(generator, out_dim), ops.randn(generator, pixels, out_dim), patch]

    return ops.OpCase(f"image 1x{channels}x{height}x{width}, Dp {out_dim}", make_args,
                      flops=2 * pixels * out_dim * channels, bytes=BF16 * (channels * pixels + 2 * pixels * out_dim))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(tiny=tiny)
    return {f"pixel_embed_{size}": _case(height, width, config["patch_size"], config["in_channels"],
                                         config["pixel_hidden_size"])
            for size, (height, width) in ops.sizes(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
