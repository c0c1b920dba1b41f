"""Benchmark swiglu: the MM-DiT MLP's hidden layer silu(x w1^T) * (x w3^T) as one GEMM.

Cases (bf16, batch 1, width C of the released v1 config, hidden H = int(2 * 4C / 3) as
pid.model.blocks.SwiGLU builds it), per output size S of pid.bench.ops.SIZES ((S/P)² image
tokens M): FLOPs = 2 * M * C * 2H (both projections); bytes: x read once, w1 and w3 read
once, the [M, H] product written once.

Usage: python benchmarks/bench_swiglu.py [--cases image_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/swiglu.csv (pid.bench.ops.COLUMNS).
Tile overrides: PID_TUNING_SWIGLU=BLOCK_N=128,num_stages=3 (see pid_kernels/tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "swiglu"
BF16 = 2


def _case(tokens: int, width: int, hidden: int) -> ops.OpCase:
    def make_args(device, generator):
        scale = width ** -0.5
        return [ops.randn(generator, 1, tokens, width), ops.randn(generator, hidden, width, scale=scale),
                ops.randn(generator, hidden, width, scale=scale)]

    return ops.OpCase(f"x 1x{tokens}x{width}, w1/w3 {hidden}x{width}", make_args,
                      flops=2 * tokens * width * 2 * hidden,
                      bytes=BF16 * (tokens * width + 2 * hidden * width + tokens * hidden))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(ops.DEFAULT_CHECKPOINT, tiny)
    width, patch = config["hidden_size"], config["patch_size"]
    hidden = int(2 * 4 * width / 3)
    return {
        f"image_{size}": _case((height // patch) * (width_px // patch), width, hidden)
        for size, (height, width_px) in ops.sizes(tiny).items()
    }


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
