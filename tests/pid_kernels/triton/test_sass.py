"""pid_kernels/triton/_sass.py: static facts of kernels compiled for sm_90a / sm_100a without a GPU."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from pid_kernels.triton import _sass, attention

# Compiling needs the real @triton.jit functions: a process without TRITON_INTERPRET.
COMPILE = """
import json, sys, torch
from pid_kernels.triton import _sass, attention, pit_pixel_mlp, swiglu
arch, kernel = sys.argv[1], sys.argv[2]
if kernel == "swiglu":
    spec = swiglu.compile_spec(torch.bfloat16, arch)
elif kernel == "pit_pixel_mlp":
    spec = pit_pixel_mlp.compile_specs(arch)[0]  # bf16
    del spec["variant"]
else:
    spec = attention.pipelined_compile_spec(int(kernel.removeprefix("attention_d")), torch.bfloat16, arch)
print(json.dumps(_sass.kernel_facts(_sass.compile_for(**spec), arch)))
"""


def compiled_facts(arch: str, kernel: str) -> dict:
    """kernel_facts of "swiglu", "pit_pixel_mlp" or "attention_d<head dim>" compiled for arch in a fresh process."""
    # The arch tables as they are: no interpreter, no PID_TUNING_* override (tests/conftest.py sets one).
    env = {key: value for key, value in os.environ.items()
           if key != "TRITON_INTERPRET" and not key.startswith("PID_TUNING_")}
    run = subprocess.run([sys.executable, "-c", COMPILE, arch, kernel], env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])

# PTX shapes of the three overlaps and of none (instructions only, in program order).
WAIT_PENDING = "wgmma.mma_async; wgmma.wait_group.sync.aligned 1; ex2.approx.f32; wgmma.wait_group.sync.aligned 0;"
MMA_PARTITION = ("setmaxnreg.inc.sync.aligned.u32 240; ex2.approx.f32; "
                 "setmaxnreg.dec.sync.aligned.u32 24; tcgen05.mma.cta_group::1;")
CONSUMERS = ("setmaxnreg.inc.sync.aligned.u32 232; wgmma.mma_async; wgmma.wait_group.sync.aligned 0; ex2.approx.f32; "
             "setmaxnreg.inc.sync.aligned.u32 232; wgmma.mma_async; wgmma.wait_group.sync.aligned 0; ex2.approx.f32;")
SERIAL = "wgmma.mma_async; wgmma.wait_group.sync.aligned 0; ex2.approx.f32; wgmma.mma_async;"
# SASS: ptxas sank the PTX wait 0 of an HGMMA group below exp2 work that does not depend on it, or did not.
SASS_SUNK_WAIT = "WARPGROUP.ARRIVE ; HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ; MUFU.EX2 R1, R2 ; " \
    "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR8], R24, gsb0 ; MUFU.EX2 R3, R4 ; WARPGROUP.DEPBAR.LE gsb0, 0x0 ;"
SASS_SERIAL = "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ; WARPGROUP.DEPBAR.LE gsb0, 0x0 ; MUFU.EX2 R1, R2 ;"


@pytest.mark.parametrize("ptx,sass,kind", [
    (WAIT_PENDING, "", "wait_pending"), (MMA_PARTITION, "", "mma_partition"), (CONSUMERS, "", "consumer_warpgroups"),
    (SERIAL, "", "none"), (SERIAL, SASS_SUNK_WAIT, "wait_pending"), (SERIAL, SASS_SERIAL, "none"),
])
def test_softmax_overlap_kinds(ptx, sass, kind):
    assert _sass.softmax_overlap(ptx, sass) == kind


@pytest.mark.parametrize("arch,head_dim,mma,warp_specialized,overlap", [
    ("sm_90a", 72, "wgmma", False, "wait_pending"),
    ("sm_100a", 64, "tcgen05", True, "mma_partition"),
])
def test_pipelined_attention_compiles_as_designed(arch, head_dim, mma, warp_specialized, overlap):
    """v1/PiT shapes' kernel (caption mask or ragged keys) as the launcher builds it: the docstring's claims."""
    facts = compiled_facts(arch, f"attention_d{head_dim}")
    assert facts["spills"] == 0 and facts["mma"] == mma and facts["tma"], facts
    assert facts["warp_specialized"] == warp_specialized and facts["softmax_overlap"] == overlap, facts
    assert facts["ctas_per_sm"] == 1, facts
    assert attention.mma_useful_fraction(head_dim, pipelined=True) >= 0.85


def test_swiglu_compiles_without_spills():
    """sm_90a: the fused SwiGLU GEMM stays on wgmma with both accumulators in registers."""
    facts = compiled_facts("sm_90a", "swiglu")
    assert facts["spills"] == 0 and facts["mma"] == "wgmma", facts


@pytest.mark.parametrize("arch", sorted(_sass.ARCH_LIMITS))
def test_attention_compile_specs_name_every_argument(arch):
    """compile_specs: one entry per launched variant, each giving every kernel argument a type or a value."""
    specs = attention.compile_specs(arch)
    assert len({spec["variant"] for spec in specs}) == len(specs)
    for spec in specs:
        assert set(spec["signature"]) | set(spec["constexprs"]) == set(spec["fn"].arg_names), spec["variant"]
        assert spec["arch"] == arch and spec["head_dim"] in (64, 72)


@pytest.mark.parametrize("arch,mma", [("sm_90a", "wgmma"), ("sm_100a", "tcgen05"), ("sm_120", "mma.sync")])
def test_pit_pixel_mlp_compiles_to_tensor_cores_without_spills(arch, mma):
    """Both per-pixel products on each arch's tensor-core path, as its docstring and the tables say."""
    facts = compiled_facts(arch, "pit_pixel_mlp")
    assert facts["spills"] == 0 and facts["mma"] == mma, facts
