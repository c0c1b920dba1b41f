"""The fp8 path on the golden architectures (v1, v1.5, sr8x, Flux.2 latents), through the CPU
emulation: every architecture quantizes, loads and runs; its velocity stays near the official
float32 one, and the fp8 error is reported next to bf16's."""

import pytest
import torch

import pid
from conftest import FORWARD_CASES
from pid.quant.linear import FP8Linear

# Relative L2 error of the fp8 velocity against the golden float32 one (random tiny weights:
# a loose sanity bound; the quality gate is tests/pid/quant/test_quality.py).
MAX_RELATIVE_ERROR = 0.1


def _velocity(net, g):
    with torch.no_grad():
        return net(g["inputs.x_t"], g["inputs.t"], g["inputs.y"], lq_latent=g["inputs.lq_latent"],
                   degrade_sigma=g["inputs.degrade_sigma"]).float()


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_golden_architectures_run_in_fp8(golden, case):
    g = golden(case)
    expected = g["outputs.velocity"].float()
    fp8 = pid.load(g.weights(), config=g.config, precision="fp8")
    assert isinstance(fp8.patch_blocks[0].attn.qkv_x, FP8Linear)
    bf16 = pid.load(g.weights(), config=g.config, dtype=torch.bfloat16)
    errors = {name: ((_velocity(net, g) - expected).norm() / expected.norm()).item()
              for name, net in (("fp8", fp8), ("bf16", bf16))}
    print(f"\n{case}: relative L2 error vs the official float32 velocity: "
          + ", ".join(f"{name} {error:.4f}" for name, error in errors.items()))
    assert errors["fp8"] < MAX_RELATIVE_ERROR, errors
