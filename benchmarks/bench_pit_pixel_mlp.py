"""Benchmark pit_pixel_mlp: the MLP half of a PiT block per pixel, RMSNorm(Dp) + modulate +
Dp -> 4Dp GELU + 4Dp -> Dp + gate + residual.

Cases (bf16, widths of the released v1 config), per output size S of pid.bench.ops.SIZES:
  pit_mlp_<S>: pixels [(S/P)², P², Dp]; shift/scale/gate per-pixel views of the
               [(S/P)², P², 6Dp] modulation; fc1 Dp -> 4Dp, fc2 4Dp -> Dp.
Bytes: pixels, shift, scale, gate read once, the output written once (weights negligible).
FLOPs: the two matrix products, 2 * 2 * Dp * 4Dp per pixel (norm, GELU, gating not counted).
Implementations: both backends, pid_triton (both products on the tensor cores) and pid_cuda
(one thread per pixel on the CUDA cores), whichever the tuning table picks as "ours"; the
op is copy-bound (25.6 FLOPs per byte in bf16), so its rows read as GB/s against the copy ceiling.

Usage: python benchmarks/bench_pit_pixel_mlp.py [--cases pit_mlp_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/pit_pixel_mlp.csv (pid.bench.ops.COLUMNS).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "pit_pixel_mlp"
BF16 = 2


def _other_backends() -> dict:
    """pid_<backend> -> impl for the op's backends other than the one pid_kernels.REGISTRY runs."""
    import pid_kernels

    chosen = pid_kernels.REGISTRY[OP]
    return {f"pid_{backend}": op.impl for backend, op in pid_kernels.BACKENDS_OF[OP].items() if op is not chosen}


def _case(patches: int, pixels_per_patch: int, width: int) -> ops.OpCase:
    hidden = 4 * width
    pixels = patches * pixels_per_patch

    def make_args(device, generator):
        shift, scale, gate = ops.randn(generator, patches, pixels_per_patch, 6 * width).chunk(6, -1)[3:]
        return [ops.randn(generator, patches, pixels_per_patch, width), ops.norm_weight(generator, width),
                shift, scale, gate, ops.randn(generator, hidden, width, scale=width**-0.5), ops.randn(generator, hidden),
                ops.randn(generator, width, hidden, scale=hidden**-0.5), ops.randn(generator, width)]

    return ops.OpCase(f"pixels {patches}x{pixels_per_patch}x{width}, hidden {hidden}", make_args,
                      flops=4 * pixels * width * hidden, bytes=BF16 * 5 * pixels * width, baselines=_other_backends())


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    return {f"pit_mlp_{size}": _case(*layouts["pit"]) for size, layouts in ops.row_layouts(tiny).items()}


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
