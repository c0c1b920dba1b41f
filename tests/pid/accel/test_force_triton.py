"""TRITON_INTERPRET=1 PID_FORCE_TRITON=1: the public API runs every Triton op, and the
golden vectors check the fused path end to end (fp32: ||d||_2 <= 1e-4 ||ref||_2)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import GOLDEN_DIR, REPO, require_golden

SCRIPT = r"""
import json, sys, torch
from safetensors.torch import load_file
import pid
torch.set_num_threads(1)
golden, case, sampler = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
meta = json.load(open(f"{golden}/{case}.json"))
t = load_file(f"{golden}/{case}.safetensors")
# Building the model switches the Triton ops on (pid.accel.kernels.enable_forced_triton).
net = pid.load({k: v for k, v in t.items() if k.startswith("net.")}, config=meta["config"])
import pid_kernels
def rel(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()
with torch.no_grad():
    v = net(t["inputs.x_t"], t["inputs.t"], t["inputs.y"], lq_latent=t["inputs.lq_latent"],
            degrade_sigma=t["inputs.degrade_sigma"])
result = {"velocity": rel(v, t["outputs.velocity"])}
if sampler:
    noise = [t["sampler.noise"]] + [t[f"sampler.eps.{i}"] for i in range(3)]
    x0 = pid.Decoder(net).decode(t["sampler.inputs.lq_latent"], t["sampler.inputs.degrade_sigma"],
                                 t["sampler.inputs.y"], noise=noise, clamp=False)
    result["x0"] = rel(x0, t["sampler.x0"])
result["enabled"] = pid_kernels.enabled()
result["triton_ops"] = sorted(n for n, op in pid_kernels.REGISTRY.items() if op.backend == "triton")
result["calls"] = pid_kernels.CALLS
print(json.dumps(result))
"""


@pytest.mark.parametrize("case,sampler", [("v1_tiny", True), ("v15_tiny", True), ("sr8_tiny", False)])
def test_golden_through_every_triton_op(case, sampler):
    require_golden()
    env = {**os.environ, "TRITON_INTERPRET": "1", "PID_FORCE_TRITON": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(GOLDEN_DIR), case, "1" if sampler else "0"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["enabled"] == result["triton_ops"]
    for name in result["triton_ops"]:
        if name == "unembed_update" and not sampler:
            continue  # only the Decoder calls the fused final step
        if name.endswith("_fp8"):
            continue  # only quantized networks call the fp8 ops (tests/pid/quant/test_fused_fp8.py)
        assert result["calls"][name]["fused"] > 0 and result["calls"][name]["fallback"] == 0, name
    assert result["velocity"] <= 1e-4, result
    if sampler:
        assert result["x0"] <= 1e-4, result
