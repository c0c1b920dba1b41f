"""Benchmark sigma_gate: the sigma-aware LQ gate x + sigmoid([x, lq] W^T + b - exp(log_alpha) sigma) lq.

Cases (bf16, batch 1, width C of the released configs), per output size S of pid.bench.ops.SIZES
((S/P)² patch tokens M):
  per_channel_<S>: the v1 gate, W [C, 2C]: a GEMM, FLOPs = 2 * M * C * 2C;
  per_token_<S>:   the v1.5 gate, W [1, 2C]: a GEMV, memory-bound.
Bytes: x and lq read once, W read once, the output written once.

Usage: python benchmarks/bench_sigma_gate.py [--cases per_channel_2048] [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/sigma_gate.csv (pid.bench.ops.COLUMNS).
Tile overrides: PID_TUNING_SIGMA_GATE=BLOCK_N=256,num_stages=3 (see pid_kernels/tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "sigma_gate"
BF16 = 2
# The v1 gate has one output per channel, v1.5's one per token (pid.configs lq_gate_type).
GATES = {"per_channel": ops.DEFAULT_CHECKPOINT, "per_token": ops.V15_CHECKPOINT}


def _case(tokens: int, width: int, outputs: int) -> ops.OpCase:
    def make_args(device, generator):
        x, lq = ops.randn(generator, 1, tokens, width), ops.randn(generator, 1, tokens, width)
        weight = ops.randn(generator, outputs, 2 * width, scale=(2 * width) ** -0.5)
        log_alpha = torch.tensor(0.4, device=device).bfloat16()
        return [x, lq, weight, ops.randn(generator, outputs), log_alpha,
                torch.rand(1, generator=generator, device=device)]

    return ops.OpCase(f"x, lq 1x{tokens}x{width}, W {outputs}x{2 * width}", make_args,
                      flops=2 * tokens * 2 * width * outputs,
                      bytes=BF16 * (3 * tokens * width + outputs * 2 * width))


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    table = {}
    for gate, checkpoint in GATES.items():
        config = ops.config(checkpoint, tiny)
        width, patch = config["hidden_size"], config["patch_size"]
        outputs = width if config["lq_gate_type"] == "sigma_aware_per_token_per_dim" else 1
        for size, (height, width_px) in ops.sizes(tiny).items():
            table[f"{gate}_{size}"] = _case((height // patch) * (width_px // patch), width, outputs)
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
