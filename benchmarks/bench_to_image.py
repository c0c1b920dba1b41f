"""Benchmark to_image: [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3].

Cases per output size S of pid.bench.ops.SIZES: to_image_<S> (float32 images, as the sampler
returns them, truncated as the release's writer), to_image_<S>_bf16 (bfloat16 images),
to_image_<S>_nearest (float32, rounded half to even). Bytes: the image read once, the uint8
array written once. Outputs must equal the reference's (error 0).

Usage: python benchmarks/bench_to_image.py [--cases to_image_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/to_image.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "to_image"
# Slightly past [-1, 1], so the clamp is exercised.
VALUE_RANGE = 1.1


def _case(height: int, width: int, dtype: torch.dtype, round_to_nearest: bool) -> ops.OpCase:
    def make_args(device, generator):
        images = torch.rand(1, 3, height, width, generator=generator, device=device) * 2 * VALUE_RANGE - VALUE_RANGE
        return [images.to(dtype), round_to_nearest]

    element = torch.tensor([], dtype=dtype).element_size()
    rounding = "nearest" if round_to_nearest else "truncate"
    return ops.OpCase(f"images 1x3x{height}x{width}, {rounding}", make_args, flops=0,
                      bytes=3 * height * width * (element + 1), dtype=dtype)


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    table = {}
    for size, (height, width) in ops.sizes(tiny).items():
        table[f"to_image_{size}"] = _case(height, width, torch.float32, False)
        table[f"to_image_{size}_bf16"] = _case(height, width, torch.bfloat16, False)
        table[f"to_image_{size}_nearest"] = _case(height, width, torch.float32, True)
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
