"""Benchmark patch_embed_fp8: patches quantized per token, then the Triton fp8 GEMM + bias.

Cases (bf16 image [1, 3, S, S], W e4m3 [C, 3P²] with per-channel scales), per output size S of
pid.bench.ops.SIZES ((S/P)² patch tokens M): patch_embed_<S>, FLOPs = 2 * M * 3P² * C, bounded by
the fp8 matmul ceiling where measured. Bytes: the image read twice (unfold, quantization) and the
e4m3 patches written and read once, W once (1 B), the tokens written once. Memory-bound at K = 768.

Usage: python benchmarks/bench_patch_embed_fp8.py [--cases patch_embed_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/patch_embed_fp8.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402
from pid.quant.fp8 import quantize_rows  # noqa: E402

OP = "patch_embed_fp8"
BF16, E4M3 = 2, 1
RGB = 3


def _case(height: int, width_px: int, width: int, patch: int) -> ops.OpCase:
    fan_in = RGB * patch * patch
    tokens = (height // patch) * (width_px // patch)

    def make_args(device, generator):
        weight_q, weight_scale = quantize_rows(ops.randn(generator, width, fan_in, scale=fan_in**-0.5))
        return [ops.randn(generator, 1, RGB, height, width_px), weight_q, weight_scale.view(-1),
                ops.randn(generator, width), patch]

    image = RGB * height * width_px
    return ops.OpCase(f"image 1x3x{height}x{width_px}, W e4m3 {width}x{fan_in}", make_args,
                      flops=2 * tokens * fan_in * width,
                      bytes=2 * BF16 * image + 2 * E4M3 * image + E4M3 * width * fan_in + BF16 * (tokens * width + width),
                      matmul="fp8")


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(ops.DEFAULT_CHECKPOINT, tiny)
    return {f"patch_embed_{size}": _case(height, width_px, config["hidden_size"], config["patch_size"])
            for size, (height, width_px) in ops.sizes(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
