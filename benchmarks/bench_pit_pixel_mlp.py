"""Benchmark pid_kernels/pit_pixel_mlp.py: the PiT MLP half per pixel (CUDA).

Cases (bf16, released v1 widths) at 1024², 2048² and 4096² output: pit_mlp_<S>, pixels
[B*(S/16)², 256, 16] with shift/scale/gate per-pixel views of the [B*(S/16)², 256, 96]
modulation, fc1 16->64 and fc2 64->16. Bytes: pixels, shift, scale, gate read once,
output written once (weights are negligible). FLOPs: 2 * (16*64 + 64*16) per pixel
(the matrix products; norm, GELU and gating not counted): on CUDA cores this op is
closer to its arithmetic ceiling than to its memory one, so rows give TFLOP/s too.
Implementations: pid_cuda, the eager reference, the reference under torch.compile.

Usage: python benchmarks/bench_pit_pixel_mlp.py [--cases pit_mlp_2048] [--runs 20] [--batch 1]
Rows go to benchmarks/results/pit_pixel_mlp.csv (plot: .png). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import sys

import torch

from memory_bound import PIXEL_WIDTH, PIXELS_PER_PATCH, RESOLUTIONS, Case, compiled, main, tokens

BF16 = 2
HIDDEN = 4 * PIXEL_WIDTH


def _impls():
    from pid_kernels.cuda import pit_pixel_mlp

    def ours(pixels, modulation, *weights):
        shift, scale, gate = modulation.chunk(6, -1)[3:]
        return pit_pixel_mlp.pit_pixel_mlp(pixels, weights[0], shift, scale, gate, *weights[1:])

    def eager(pixels, modulation, *weights):
        shift, scale, gate = modulation.chunk(6, -1)[3:]
        return pit_pixel_mlp.reference(pixels, weights[0], shift, scale, gate, *weights[1:])

    return {"pid_cuda": ours, "eager_reference": eager, "compiled_reference": compiled(eager)}


def pit_mlp(resolution):
    def build(batch):
        patches = tokens(resolution, batch)
        pixels = patches * PIXELS_PER_PATCH

        def make():
            def randn(*shape, scale=1.0):
                return (torch.randn(*shape, device="cuda") * scale).to(torch.bfloat16)

            return [randn(patches, PIXELS_PER_PATCH, PIXEL_WIDTH), randn(patches, PIXELS_PER_PATCH, 6 * PIXEL_WIDTH),
                    (torch.rand(PIXEL_WIDTH, device="cuda") + 0.5).to(torch.bfloat16),
                    randn(HIDDEN, PIXEL_WIDTH, scale=0.25), randn(HIDDEN), randn(PIXEL_WIDTH, HIDDEN, scale=0.125),
                    randn(PIXEL_WIDTH)]

        return Case(make, bytes_moved=BF16 * 5 * pixels * PIXEL_WIDTH, impls=_impls(),
                    flops=4 * pixels * PIXEL_WIDTH * HIDDEN,
                    info={"x": f"{patches}x{PIXELS_PER_PATCH}x{PIXEL_WIDTH}"})

    return build


CASES = {f"pit_mlp_{size}": pit_mlp(size) for size in RESOLUTIONS}

if __name__ == "__main__":
    sys.exit(main("pit_pixel_mlp", CASES, __doc__))
