"""Benchmark gated_residual_rmsnorm_modulate_fp8: x' = x + gate * y and the adaLN of x' quantized
per token for the fp8 SwiGLU GEMMs, one pass.

Cases (bf16; the v1 MM-DiT rows, x, y [1, (S/P)², C], gate/shift/scale views of the [1, 1, 6C]
modulation), per output size S of pid.bench.ops.SIZES: mmdit_<S>. Bytes: x and y read, x' written
(2 B each) and the values written (1 B) per element, one float32 scale per token, the modulation
views and the weight once. Memory-bound.

Usage: python benchmarks/bench_gated_residual_rmsnorm_modulate_fp8.py [--cases mmdit_2048] [--dry-run] [--list]
Rows go to benchmarks/results/gated_residual_rmsnorm_modulate_fp8.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "gated_residual_rmsnorm_modulate_fp8"
BF16, E4M3, SCALE = 2, 1, 4


def _case(rows: int, tokens: int, width: int) -> ops.OpCase:
    def make_args(device, generator):
        shift, scale, gate = ops.randn(generator, rows, 1, 6 * width).chunk(6, -1)[3:]
        x, y = ops.randn(generator, rows, tokens, width), ops.randn(generator, rows, tokens, width)
        return [x, gate, y, ops.norm_weight(generator, width), shift, scale]

    elements = rows * tokens * width
    return ops.OpCase(f"x, y {rows}x{tokens}x{width}, modulation {rows}x1x{6 * width}", make_args, flops=0,
                      bytes=(3 * BF16 + E4M3) * elements + SCALE * rows * tokens + BF16 * 4 * width)


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    return {f"mmdit_{size}": _case(*layouts["mmdit"]) for size, layouts in ops.row_layouts(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
