"""Benchmark rmsnorm_modulate: adaLN rms_norm(x) * w * (1 + scale) + shift.

Cases (bf16, widths of the released v1 config), per output size S of pid.bench.ops.SIZES:
  mmdit_<S>:          x [1, (S/P)², C], shift/scale views of the [1, 1, 6C] modulation;
  pit_pixel_norm_<S>: the PiT attention prologue, x [(S/P)², P², Dp], shift/scale per-pixel
                      views of the [(S/P)², P², 6Dp] modulation.
Bytes: x read and out written once, shift/scale and the weight read once. Memory-bound.

Usage: python benchmarks/bench_rmsnorm_modulate.py [--cases mmdit_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/rmsnorm_modulate.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "rmsnorm_modulate"
BF16 = 2


def _case(rows: int, tokens: int, width: int, per_row_modulation: bool) -> ops.OpCase:
    x_shape = (rows, tokens, width)
    modulation_shape = (rows, tokens if per_row_modulation else 1, 6 * width)

    def make_args(device, generator):
        shift, scale = ops.randn(generator, *modulation_shape).chunk(6, -1)[:2]
        return [ops.randn(generator, *x_shape), ops.norm_weight(generator, width), shift, scale]

    modulation_elements = 2 * (rows * tokens * width if per_row_modulation else width)
    return ops.OpCase(f"x {'x'.join(map(str, x_shape))}, modulation {'x'.join(map(str, modulation_shape))}", make_args,
                      flops=0, bytes=BF16 * (2 * rows * tokens * width + modulation_elements + width))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    table = {}
    for size, layouts in ops.row_layouts(tiny).items():
        table[f"mmdit_{size}"] = _case(*layouts["mmdit"], per_row_modulation=False)
        table[f"pit_pixel_norm_{size}"] = _case(*layouts["pit"], per_row_modulation=True)
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
