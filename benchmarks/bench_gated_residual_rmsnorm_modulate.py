"""Benchmark gated_residual_rmsnorm_modulate: x' = x + gate * y and rmsnorm_modulate(x') in one pass.

Cases (bf16, widths of the released v1 config), per output size S of pid.bench.ops.SIZES:
  mmdit_<S>: x, y [1, (S/P)², C]; gate, shift, scale views of the [1, 1, 6C] modulation
             (the chain between an MM-DiT block's attention and its MLP).
Bytes: x, y read once, both outputs written once, gate/shift/scale and the weight read once.
Memory-bound. The unfused pair is benchmarks/bench_gated_residual.py + bench_rmsnorm_modulate.py.

Usage: python benchmarks/bench_gated_residual_rmsnorm_modulate.py [--cases mmdit_2048] [--dry-run] [--list]
Rows go to benchmarks/results/gated_residual_rmsnorm_modulate.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "gated_residual_rmsnorm_modulate"
BF16 = 2


def _case(rows: int, tokens: int, width: int) -> ops.OpCase:
    x_shape = (rows, tokens, width)

    def make_args(device, generator):
        _, _, gate, shift, scale, _ = ops.randn(generator, rows, 1, 6 * width).chunk(6, -1)
        return [ops.randn(generator, *x_shape), gate, ops.randn(generator, *x_shape), ops.norm_weight(generator, width),
                shift, scale]

    return ops.OpCase(f"x, y {'x'.join(map(str, x_shape))}, modulation {rows}x1x{6 * width}", make_args,
                      flops=0, bytes=BF16 * (4 * rows * tokens * width + 3 * rows * width + width))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    return {f"mmdit_{size}": _case(*layouts["mmdit"]) for size, layouts in ops.row_layouts(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
