"""Benchmark unembed_update: final RMSNorm + linear Dp -> 3 + un-patchify + the sampler step.

Cases (bf16 pixel tokens, float32 images as in the Decoder, batch 1, widths of the released
v1 config), per output size S of pid.bench.ops.SIZES:
  renoise_<S>: a middle step, x_next = (1 - t') (x_t - t v) + t' noise;
  last_<S>:    the last step, x0 = x_t - t v (no noise read).
Memory-bound: bytes = the pixel tokens, x_t (and noise) read once, the image written once.

Usage: python benchmarks/bench_unembed_update.py [--cases renoise_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/unembed_update.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "unembed_update"
BF16, FLOAT32 = 2, 4


def _case(height: int, width: int, patch: int, channels: int, pixel_width: int, renoise: bool) -> ops.OpCase:
    tokens = (height // patch) * (width // patch)

    def make_args(device, generator):
        image = (1, channels, height, width)
        x_t = torch.randn(*image, generator=generator, device=device)
        noise = torch.randn(*image, generator=generator, device=device) if renoise else None
        t, t_next = torch.tensor(0.866, device=device), torch.tensor(0.634 if renoise else 0.0, device=device)
        return [ops.randn(generator, tokens, patch * patch, pixel_width), ops.norm_weight(generator, pixel_width),
                ops.randn(generator, channels, pixel_width, scale=pixel_width**-0.5), ops.randn(generator, channels),
                (height, width), patch, x_t, t, t_next, noise]

    float32_images = 3 if renoise else 2
    return ops.OpCase(f"pixels {tokens}x{patch * patch}x{pixel_width}, images 1x{channels}x{height}x{width} float32",
                      make_args, flops=2 * height * width * pixel_width * channels,
                      bytes=height * width * (pixel_width * BF16 + float32_images * channels * FLOAT32),
                      dtype=torch.bfloat16)


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(tiny=tiny)
    geometry = (config["patch_size"], config["in_channels"], config["pixel_hidden_size"])
    table = {}
    for step in ("renoise", "last"):
        for size, (height, width) in ops.sizes(tiny).items():
            table[f"{step}_{size}"] = _case(height, width, *geometry, renoise=step == "renoise")
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
