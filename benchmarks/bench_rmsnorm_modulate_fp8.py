"""Benchmark rmsnorm_modulate_fp8: adaLN quantized per token for the fp8 qkv GEMMs, one pass.

Cases (bf16 in, e4m3 + float32 per-token scales out; the v1 MM-DiT rows, x [1, (S/P)², C], shift
and scale views of the [1, 1, 6C] modulation), per output size S of pid.bench.ops.SIZES:
  mmdit_<S>. Bytes: x read (2 B) and the values written (1 B) per element, one scale per token,
  shift/scale and the weight once. Memory-bound; the unfused path moves 2 + 2 + 2 + 1 B per
  element (bf16 out, amax and quantize passes reading it back), this one 3 B.

Usage: python benchmarks/bench_rmsnorm_modulate_fp8.py [--cases mmdit_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/rmsnorm_modulate_fp8.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "rmsnorm_modulate_fp8"
BF16, E4M3, SCALE = 2, 1, 4


def _case(rows: int, tokens: int, width: int) -> ops.OpCase:
    def make_args(device, generator):
        shift, scale = ops.randn(generator, rows, 1, 6 * width).chunk(6, -1)[:2]
        return [ops.randn(generator, rows, tokens, width), ops.norm_weight(generator, width), shift, scale]

    elements = rows * tokens * width
    return ops.OpCase(f"x {rows}x{tokens}x{width}, modulation {rows}x1x{6 * width}", make_args, flops=0,
                      bytes=(BF16 + E4M3) * elements + SCALE * rows * tokens + BF16 * 3 * width)


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    return {f"mmdit_{size}": _case(*layouts["mmdit"]) for size, layouts in ops.row_layouts(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
