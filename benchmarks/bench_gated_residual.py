"""Benchmark gated_residual: x + gate * y.

Cases (bf16, widths of the released v1 config), per output size S of pid.bench.ops.SIZES:
  mmdit_<S>:    x, y [1, (S/P)², C], gate a view of the [1, 1, 6C] modulation;
  pit_gate_<S>: the PiT residual after the expand GEMM, x, y [(S/P)², P², Dp], gate a per-pixel
                view of the [(S/P)², P², 6Dp] modulation.
Bytes: x, y, gate read once, the output written once. Memory-bound.

Usage: python benchmarks/bench_gated_residual.py [--cases mmdit_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/gated_residual.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "gated_residual"
BF16 = 2
GATE_CHUNK = 2  # gate_a of the six modulation chunks (shift, scale, gate per half)


def _case(rows: int, tokens: int, width: int, per_row_gate: bool) -> ops.OpCase:
    x_shape = (rows, tokens, width)
    modulation_shape = (rows, tokens if per_row_gate else 1, 6 * width)

    def make_args(device, generator):
        gate = ops.randn(generator, *modulation_shape).chunk(6, -1)[GATE_CHUNK]
        return [ops.randn(generator, *x_shape), gate, ops.randn(generator, *x_shape)]

    gate_elements = rows * tokens * width if per_row_gate else width
    return ops.OpCase(f"x, y {'x'.join(map(str, x_shape))}, modulation {'x'.join(map(str, modulation_shape))}",
                      make_args, flops=0, bytes=BF16 * (3 * rows * tokens * width + gate_elements))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    table = {}
    for size, layouts in ops.row_layouts(tiny).items():
        table[f"mmdit_{size}"] = _case(*layouts["mmdit"], per_row_gate=False)
        table[f"pit_gate_{size}"] = _case(*layouts["pit"], per_row_gate=True)
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
