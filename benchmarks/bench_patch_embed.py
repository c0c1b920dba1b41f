"""Benchmark pid_kernels/patch_embed.py: the fused patch and pixel embeddings.

Cases (bf16, batch 1, released widths C = 1536, Dp = 16, P = 16), at 1024²,
2048² and 4096² images:
  patch_embed_<S>: unfold + linear 768 -> C, a GEMM: FLOPs = 2 * Li * C * 768,
                   reported as TFLOP/s and % of the measured bf16 matmul rate;
  pixel_embed_<S>: per-pixel linear 3 -> Dp + position table, patch-major:
                   memory-bound, bytes = image + position table read once +
                   pixel tokens written once, as GB/s and % of the measured copy
                   bandwidth (target: >= 80%).
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_patch_embed.py [--cases pixel_embed_2048] [--runs 20]
Rows go to benchmarks/results/patch_embed.csv, the plot to patch_embed.png.
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape per op on CPU under the Triton interpreter (no timings).
"""

from __future__ import annotations

import sys

import torch

from runner import Seam

PATCH_SIZE = 16
WIDTH = 1536
PIXEL_DIM = 16
CASES = {f"{op}_{size}": (op, size, size, WIDTH if op == "patch_embed" else PIXEL_DIM)
         for op in ("patch_embed", "pixel_embed") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"patch_embed_smoke": ("patch_embed", 48, 80, 40), "pixel_embed_smoke": ("pixel_embed", 48, 80, 16)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    op, height, width, out_dim = case
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(dtype)

    image = randn(1, 3, height, width)
    if op == "patch_embed":
        fan_in = 3 * PATCH_SIZE**2
        return [image, randn(out_dim, fan_in, scale=fan_in**-0.5), randn(out_dim), PATCH_SIZE]
    return [image, randn(out_dim, 3), randn(out_dim), randn(height * width, out_dim), PATCH_SIZE]


def work(case, element_bytes=2):
    """(FLOPs, fewest bytes moved) of one call."""
    op, height, width, out_dim = case
    pixels = height * width
    if op == "patch_embed":
        tokens, fan_in = pixels // PATCH_SIZE**2, 3 * PATCH_SIZE**2
        return 2 * tokens * out_dim * fan_in, (3 * pixels + out_dim * fan_in + tokens * out_dim) * element_bytes
    return 2 * pixels * out_dim * 4, (3 * pixels + 2 * pixels * out_dim) * element_bytes


def kernels(case):
    from pid_kernels.triton import patch_embed

    if case[0] == "patch_embed":
        return patch_embed.patch_embed, patch_embed.patch_embed_reference
    return patch_embed.pixel_embed, patch_embed.pixel_embed_reference


def columns(case):
    op, height, width, out_dim = case
    return {"op": op, "dtype": "bfloat16", "batch": 1, "image": f"{height}x{width}", "out_dim": out_dim}


SEAM = Seam("patch_embed", CASES, SMOKE_CASES, seam_args, work, kernels, columns,
            compute_bound=lambda case: case[0] == "patch_embed", name_width=17, tflops_digits=2)

if __name__ == "__main__":
    sys.exit(SEAM.main(__doc__))
