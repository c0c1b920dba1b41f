"""Benchmark patch_embed: patch tokens, unfold + linear 3P² -> C.

Cases (bf16, batch 1, widths of the released v1 config), per output size S of
pid.bench.ops.SIZES: patch_embed_<S>, image [1, 3, S, S] -> [1, (S/P)², C], a GEMM with
FLOPs = 2 * (S/P)² * C * 3P². Bytes: the image and W read once, the tokens written once.

Usage: python benchmarks/bench_patch_embed.py [--cases patch_embed_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/patch_embed.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "patch_embed"
BF16 = 2


def _case(height: int, width: int, patch: int, channels: int, out_dim: int) -> ops.OpCase:
    fan_in = channels * patch * patch
    tokens = (height // patch) * (width // patch)

    def make_args(device, generator):
        return [ops.randn(generator, 1, channels, height, width), ops.randn(generator, out_dim, fan_in, scale=fan_in**-0.5),
                ops.randn(generator, out_dim), patch]

    return ops.OpCase(f"image 1x{channels}x{height}x{width}, W {out_dim}x{fan_in}", make_args,
                      flops=2 * tokens * out_dim * fan_in,
                      bytes=BF16 * (channels * height * width + out_dim * fan_in + tokens * out_dim))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(tiny=tiny)
    return {f"patch_embed_{size}": _case(height, width, config["patch_size"], config["in_channels"],
                                         config["hidden_size"])
            for size, (height, width) in ops.sizes(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
