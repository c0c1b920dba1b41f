"""Benchmark pid_kernels/unembed_update.py: fused final layer + un-patchify + sampler step.

Cases (bf16 pixel tokens, float32 images as in the Decoder, batch 1, Dp = 16,
P = 16), at 1024², 2048² and 4096² images:
  renoise_<S>: a middle step: x_next = (1 - t') * (x_t - t * v) + t' * noise;
  last_<S>:    the last step: x0 = x_t - t * v (no noise read).
Memory-bound: bytes = pixel tokens + x_t (+ noise) read once + the image written
once, reported as GB/s and % of the measured copy bandwidth (target: >= 80%).
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_unembed_update.py [--cases renoise_2048] [--runs 20]
Rows go to benchmarks/results/unembed_update.csv, the plot to unembed_update.png.
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape per kind of step on CPU under the Triton interpreter (no timings).
"""

from __future__ import annotations

import sys

import torch

from runner import Seam

PATCH_SIZE = 16
PIXEL_DIM = 16
CASES = {f"{step}_{size}": (step, size, size, PIXEL_DIM) for step in ("renoise", "last") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"renoise_smoke": ("renoise", 48, 80, 16), "last_smoke": ("last", 48, 80, 16)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    step, height, width, dim = case
    gen = torch.Generator(device=device).manual_seed(seed)
    tokens = (height // PATCH_SIZE) * (width // PATCH_SIZE)
    pixels = torch.randn(tokens, PATCH_SIZE**2, dim, generator=gen, device=device).to(dtype)
    norm_weight = (torch.rand(dim, generator=gen, device=device) + 0.5).to(dtype)
    weight = (torch.randn(3, dim, generator=gen, device=device) / dim**0.5).to(dtype)
    bias = torch.randn(3, generator=gen, device=device).to(dtype)
    x_t = torch.randn(1, 3, height, width, generator=gen, device=device)
    noise = torch.randn(1, 3, height, width, generator=gen, device=device) if step == "renoise" else None
    t, t_next = torch.tensor(0.866, device=device), torch.tensor(0.634 if noise is not None else 0.0, device=device)
    return [pixels, norm_weight, weight, bias, (height, width), PATCH_SIZE, x_t, t, t_next, noise]


def work(case, element_bytes=2):
    """(0: FLOPs not counted, the op is memory-bound; fewest bytes one call moves: pixel
    tokens in, x_t (and noise) in, the float32 image out)."""
    step, height, width, dim = case
    float32_images = 3 if step == "renoise" else 2
    return 0, height * width * (dim * element_bytes + float32_images * 3 * 4)


def kernels(case):
    from pid_kernels.triton import unembed_update

    return unembed_update.fused, unembed_update.reference


def columns(case):
    return {"dtype": "bfloat16 pixels, float32 images", "batch": 1, "image": f"{case[1]}x{case[2]}",
            "pixel_dim": case[3]}


SEAM = Seam("unembed_update", CASES, SMOKE_CASES, seam_args, work, kernels, columns, name_width=13)

if __name__ == "__main__":
    sys.exit(SEAM.main(__doc__))
