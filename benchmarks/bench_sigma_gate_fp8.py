"""Benchmark sigma_gate_fp8: the v1 per-channel sigma gate with its GEMM in fp8 (e4m3 [x, lq] and W).

Cases (bf16 streams, batch 1, W [C, 2C] e4m3 with per-channel scales), per output size S of
pid.bench.ops.SIZES ((S/P)² patch tokens M): per_channel_<S>, FLOPs = 2 * M * C * 2C, bounded by
the fp8 matmul ceiling (`matmul_fp8_tflops`; the bf16 one where fp8 was not measured). Bytes: x and
lq read once (the quantization pass reads them once more, counted: it is part of the op), W read
once (1 B), the output written once.

Usage: python benchmarks/bench_sigma_gate_fp8.py [--cases per_channel_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/sigma_gate_fp8.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402
from pid.quant.fp8 import quantize_rows  # noqa: E402

OP = "sigma_gate_fp8"
BF16, E4M3 = 2, 1


def _case(tokens: int, width: int) -> ops.OpCase:
    def make_args(device, generator):
        x, lq = ops.randn(generator, 1, tokens, width), ops.randn(generator, 1, tokens, width)
        weight_q, weight_scale = quantize_rows(ops.randn(generator, width, 2 * width, scale=(2 * width) ** -0.5))
        log_alpha = torch.tensor(0.4, device=device).bfloat16()
        return [x, lq, weight_q, weight_scale.view(-1), ops.randn(generator, width), log_alpha,
                torch.rand(1, generator=generator, device=device)]

    # x, lq: read by the quantization, by the GEMM's epilogue; [x, lq] e4m3 written and read once.
    stream_bytes = tokens * width * (2 * 2 * BF16 + 2 * 2 * E4M3 + BF16)
    return ops.OpCase(f"x, lq 1x{tokens}x{width}, W e4m3 {width}x{2 * width}", make_args,
                      flops=2 * tokens * 2 * width * width, bytes=stream_bytes + E4M3 * 2 * width * width,
                      matmul="fp8")


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(ops.DEFAULT_CHECKPOINT, tiny)
    width, patch = config["hidden_size"], config["patch_size"]
    return {f"per_channel_{size}": _case((height // patch) * (width_px // patch), width)
            for size, (height, width_px) in ops.sizes(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
