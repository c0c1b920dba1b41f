"""Benchmark pid_kernels/rmsnorm_modulate.py: adaLN rms_norm(x) * w * (1 + scale) + shift (CUDA).

Cases (bf16, released v1 widths) at 1024², 2048² and 4096² output:
  mmdit_<S>:          x [B, (S/16)², 1536], shift/scale views of the [B, 1, 9216] modulation;
  pit_pixel_norm_<S>: the PiT attention prologue, x [B*(S/16)², 256, 16], shift/scale
                      per-pixel views of the [B*(S/16)², 256, 96] modulation.
Bytes: x read and out written once, shift/scale and weight read once.
Implementations: pid_cuda, the eager reference, the reference under torch.compile.

Usage: python benchmarks/bench_rmsnorm_modulate.py [--cases mmdit_2048] [--runs 20] [--batch 1]
Rows go to benchmarks/results/rmsnorm_modulate.csv (plot: .png). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import sys

import torch

from memory_bound import MMDIT_WIDTH, PIXEL_WIDTH, PIXELS_PER_PATCH, RESOLUTIONS, Case, compiled, main, tokens

BF16 = 2


def _impls():
    from pid_kernels.cuda import rmsnorm_modulate

    def ours(x, weight, modulation):
        return rmsnorm_modulate.rmsnorm_modulate(x, weight, *modulation.chunk(6, -1)[:2])

    def eager(x, weight, modulation):
        return rmsnorm_modulate.reference(x, weight, *modulation.chunk(6, -1)[:2])

    return {"pid_cuda": ours, "eager_reference": eager, "compiled_reference": compiled(eager)}


def _inputs(x_shape, modulation_shape, width):
    def make():
        return [torch.randn(x_shape, device="cuda", dtype=torch.bfloat16),
                torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5,
                torch.randn(modulation_shape, device="cuda", dtype=torch.bfloat16)]

    return make


def mmdit(resolution):
    def build(batch):
        rows = tokens(resolution, batch)
        x_shape = (batch, rows // batch, MMDIT_WIDTH)
        return Case(_inputs(x_shape, (batch, 1, 6 * MMDIT_WIDTH), MMDIT_WIDTH),
                    bytes_moved=BF16 * (2 * rows * MMDIT_WIDTH + 2 * batch * MMDIT_WIDTH + MMDIT_WIDTH),
                    impls=_impls(), info={"x": "x".join(map(str, x_shape))})

    return build


def pit_pixel_norm(resolution):
    def build(batch):
        patches = tokens(resolution, batch)
        pixels = patches * PIXELS_PER_PATCH
        x_shape = (patches, PIXELS_PER_PATCH, PIXEL_WIDTH)
        return Case(_inputs(x_shape, (patches, PIXELS_PER_PATCH, 6 * PIXEL_WIDTH), PIXEL_WIDTH),
                    bytes_moved=BF16 * (4 * pixels * PIXEL_WIDTH + PIXEL_WIDTH),
                    impls=_impls(), info={"x": "x".join(map(str, x_shape))})

    return build


CASES = {
    **{f"mmdit_{size}": mmdit(size) for size in RESOLUTIONS},
    **{f"pit_pixel_norm_{size}": pit_pixel_norm(size) for size in RESOLUTIONS},
}

if __name__ == "__main__":
    sys.exit(main("rmsnorm_modulate", CASES, __doc__))
