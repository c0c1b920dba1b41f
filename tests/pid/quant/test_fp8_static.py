"""Static compile of pid.quant's Triton kernels for sm_90a and sm_100a (no GPU): every
`compile_specs` entry compiles with 0 spills, the fp8 GEMMs and the sage attention on fp8 /
int8 tensor-core MMAs (wgmma on sm_90a, tcgen05 on sm_100a), the producers on none."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# Compiling needs the real @triton.jit functions: a process without TRITON_INTERPRET.
COMPILE = """
import json, sys
from pid_kernels.triton import _sass
from pid.quant import triton_attention, triton_gemm, triton_quantize
arch = sys.argv[1]
facts = {}
for module in (triton_gemm, triton_attention, triton_quantize):
    for spec in module.compile_specs(arch):
        kwargs = {key: spec[key] for key in ("fn", "signature", "constexprs", "arch", "num_warps", "num_stages")}
        compiled = _sass.compile_for(**kwargs)
        ptx = compiled.asm["ptx"]
        facts[spec["variant"]] = {**_sass.kernel_facts(compiled, arch),
                                  "e4m3_mma": any(("e4m3" in line or "kind::f8f6f4" in line) and "mma" in line
                                                  for line in ptx.splitlines())}
print(json.dumps(facts))
"""


def static_facts(arch: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", COMPILE, arch], env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("arch,mma", [("sm_90a", "wgmma"), ("sm_100a", "tcgen05")])
def test_fp8_kernels_compile_to_fp8_mma_without_spills(arch, mma):
    facts = static_facts(arch)
    for variant, fact in facts.items():
        assert fact["spills"] == 0, (variant, fact)
        if "_fp8" in variant and "rmsnorm" not in variant:  # the fp8 GEMMs
            assert fact["mma"] == mma and fact["e4m3_mma"], (variant, fact)
        elif variant.startswith("sage"):
            assert fact["mma"] == mma and fact["e4m3_mma"], (variant, fact)
        else:  # the producers: memory-bound rows
            assert fact["mma"] == "none", (variant, fact)
