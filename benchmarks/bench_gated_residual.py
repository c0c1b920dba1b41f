"""Benchmark pid_kernels/gated_residual.py: x + gate * y, and its fusion with the next adaLN (CUDA).

Cases (bf16, released v1 widths) at 1024², 2048² and 4096² output:
  mmdit_<S>:       x, y [B, (S/16)², 1536], gate a view of the [B, 1, 9216] modulation;
  pit_gate_<S>:    the PiT residual after the expand GEMM: x, y [B*(S/16)², 256, 16], gate a
                   per-pixel view of the [B*(S/16)², 256, 96] modulation;
  fused_mmdit_<S>: x' = x + gate * y and rmsnorm_modulate(x') (two outputs), MM-DiT shapes.
Bytes: each input read once, each output written once, broadcast operands once.
Implementations: pid_cuda (out of place), pid_cuda_inplace (gated_residual_), for the
fusion pid_cuda_unfused (our two kernels back to back), the eager chain, and the
reference under torch.compile.

Usage: python benchmarks/bench_gated_residual.py [--cases mmdit_2048,fused_mmdit_2048] [--runs 20]
Rows go to benchmarks/results/gated_residual.csv (plot: .png). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import sys

import torch

from memory_bound import MMDIT_WIDTH, PIXEL_WIDTH, PIXELS_PER_PATCH, RESOLUTIONS, Case, compiled, main, tokens

BF16 = 2
GATE_CHUNK = 2  # gate_a; shift_m, scale_m are chunks 3 and 4


def _residual_impls():
    from pid_kernels.cuda import gated_residual

    def ours(x, y, weight, modulation):
        return gated_residual.gated_residual(x, modulation.chunk(6, -1)[GATE_CHUNK], y)

    def ours_inplace(x, y, weight, modulation):
        return gated_residual.gated_residual_(x, modulation.chunk(6, -1)[GATE_CHUNK], y)

    def eager(x, y, weight, modulation):
        return gated_residual.reference(x, modulation.chunk(6, -1)[GATE_CHUNK], y)

    # In place last: its timed runs change x, which the other rows must not see.
    return {"pid_cuda": ours, "eager_reference": eager, "compiled_reference": compiled(eager),
            "pid_cuda_inplace": ours_inplace}


def _fused_impls():
    from pid_kernels.cuda import gated_residual
    from pid_kernels.cuda import rmsnorm_modulate

    def chunks(modulation):
        _, _, gate, shift, scale, _ = modulation.chunk(6, -1)
        return gate, shift, scale

    def ours(x, y, weight, modulation):
        gate, shift, scale = chunks(modulation)
        return gated_residual.gated_residual_rmsnorm_modulate(x, gate, y, weight, shift, scale)

    def ours_unfused(x, y, weight, modulation):
        gate, shift, scale = chunks(modulation)
        updated = gated_residual.gated_residual(x, gate, y)
        return updated, rmsnorm_modulate.rmsnorm_modulate(updated, weight, shift, scale)

    def eager(x, y, weight, modulation):
        gate, shift, scale = chunks(modulation)
        return gated_residual.fused_reference(x, gate, y, weight, shift, scale)

    return {"pid_cuda": ours, "pid_cuda_unfused": ours_unfused, "eager_reference": eager,
            "compiled_reference": compiled(eager)}


def _inputs(x_shape, modulation_shape, width):
    def make():
        return [torch.randn(x_shape, device="cuda", dtype=torch.bfloat16),
                torch.randn(x_shape, device="cuda", dtype=torch.bfloat16),
                torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5,
                torch.randn(modulation_shape, device="cuda", dtype=torch.bfloat16)]

    return make


def mmdit(resolution, fused=False):
    def build(batch):
        rows = tokens(resolution, batch)
        x_shape = (batch, rows // batch, MMDIT_WIDTH)
        row_tensors, broadcast = (4, 3) if fused else (3, 1)  # x, y, out(s); gate (+ shift, scale)
        moved = BF16 * (row_tensors * rows * MMDIT_WIDTH + broadcast * batch * MMDIT_WIDTH + fused * MMDIT_WIDTH)
        return Case(_inputs(x_shape, (batch, 1, 6 * MMDIT_WIDTH), MMDIT_WIDTH), bytes_moved=moved,
                    impls=_fused_impls() if fused else _residual_impls(), info={"x": "x".join(map(str, x_shape))})

    return build


def pit_gate(resolution):
    def build(batch):
        patches = tokens(resolution, batch)
        x_shape = (patches, PIXELS_PER_PATCH, PIXEL_WIDTH)
        return Case(_inputs(x_shape, (patches, PIXELS_PER_PATCH, 6 * PIXEL_WIDTH), PIXEL_WIDTH),
                    bytes_moved=BF16 * 4 * patches * PIXELS_PER_PATCH * PIXEL_WIDTH,  # x, y, gate, out
                    impls=_residual_impls(), info={"x": "x".join(map(str, x_shape))})

    return build


CASES = {
    **{f"mmdit_{size}": mmdit(size) for size in RESOLUTIONS},
    **{f"pit_gate_{size}": pit_gate(size) for size in RESOLUTIONS},
    **{f"fused_mmdit_{size}": mmdit(size, fused=True) for size in RESOLUTIONS},
}

if __name__ == "__main__":
    sys.exit(main("gated_residual", CASES, __doc__))
