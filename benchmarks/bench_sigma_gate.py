"""Benchmark pid_kernels/sigma_gate.py: the fused sigma-aware LQ gate.

Cases (bf16, batch 1, released width C = 1536), at 1024², 2048² and 4096² output
((S/16)² patch tokens M):
  per_channel_<S>: v1 gate, W [C, 2C]: a GEMM, FLOPs = 2 * M * C * 2C, reported
                   as TFLOP/s and % of the measured bf16 matmul rate;
  per_token_<S>:   v1.5 gate, W [1, 2C]: memory-bound, bytes = x and lq read once
                   (bf16) + the float32 output written once, reported as GB/s and
                   % of the measured copy bandwidth.
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_sigma_gate.py [--cases per_channel_2048] [--runs 20]
Rows go to benchmarks/results/sigma_gate.csv, the plot to sigma_gate.png.
Tile overrides: PID_TUNING_SIGMA_GATE=BLOCK_N=256,num_stages=3 (see pid_kernels/tuning).
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape on CPU under the Triton interpreter (no timings).
"""

from __future__ import annotations

import sys

import torch

from runner import Seam

PATCH_SIZE = 16
WIDTH = 1536
CASES = {f"{kind}_{size}": (kind, (size // PATCH_SIZE) ** 2, WIDTH)
         for kind in ("per_channel", "per_token") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"per_channel_smoke": ("per_channel", 37, 48), "per_token_smoke": ("per_token", 37, 48)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    kind, tokens, width = case
    gen = torch.Generator(device=device).manual_seed(seed)
    x, lq = (torch.randn(1, tokens, width, generator=gen, device=device).to(dtype) for _ in range(2))
    outputs = width if kind == "per_channel" else 1
    weight = (torch.randn(outputs, 2 * width, generator=gen, device=device) / (2 * width) ** 0.5).to(dtype)
    bias = torch.randn(outputs, generator=gen, device=device).to(dtype)
    log_alpha = torch.tensor(0.4, device=device).to(dtype)
    return [x, lq, weight, bias, log_alpha, torch.rand(1, generator=gen, device=device)]


def work(case, element_bytes=2):
    """(FLOPs, fewest bytes moved) of one call."""
    kind, tokens, width = case
    flops = 2 * tokens * width * 2 * width if kind == "per_channel" else 4 * tokens * width
    weight_bytes = (width if kind == "per_channel" else 1) * 2 * width * element_bytes
    return flops, tokens * width * (2 * element_bytes + 4) + weight_bytes


def kernels(case):
    from pid_kernels.triton import sigma_gate

    return sigma_gate.sigma_gate, sigma_gate.reference


def columns(case):
    return {"dtype": "bfloat16", "batch": 1, "tokens": case[1], "width": case[2]}


SEAM = Seam("sigma_gate", CASES, SMOKE_CASES, seam_args, work, kernels, columns,
            compute_bound=lambda case: case[0] == "per_channel", name_width=18)

if __name__ == "__main__":
    sys.exit(SEAM.main(__doc__))
