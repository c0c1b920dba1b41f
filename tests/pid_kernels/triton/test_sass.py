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
import importlib, json, sys
from pid_kernels.triton import _sass
module, arch, variant = sys.argv[1:]
spec = next(s for s in importlib.import_module(module).compile_specs(arch) if s["variant"] == variant)
print(json.dumps(_sass.kernel_facts(_sass.compile_spec(spec), arch)))
"""


def compiled_facts(module: str, arch: str, variant: str) -> dict:
    """kernel_facts of the compile_specs entry `variant` of `module`, compiled for arch in a fresh process."""
    # The arch tables as they are: no interpreter, no PID_TUNING_* override (tests/conftest.py sets one).
    env = {key: value for key, value in os.environ.items()
           if key != "TRITON_INTERPRET" and not key.startswith("PID_TUNING_")}
    run = subprocess.run([sys.executable, "-c", COMPILE, module, arch, variant], env={**env, "PYTHONPATH": str(REPO)},
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
    """The MM-DiT (d64, caption mask) and PiT (d72) kernels as the launcher builds them: the docstring's claims."""
    variant = f"d{head_dim} bf16" + (" masked" if head_dim == 64 else "")
    facts = compiled_facts("pid_kernels.triton.attention", arch, variant)
    assert facts["spills"] == 0 and facts["mma"] == mma and facts["tma"], facts
    assert facts["warp_specialized"] == warp_specialized and facts["softmax_overlap"] == overlap, facts
    assert facts["ctas_per_sm"] == 1, facts
    assert attention.mma_useful_fraction(head_dim, pipelined=True) >= 0.85


@pytest.mark.parametrize("arch", sorted(_sass.ARCH_LIMITS))
def test_attention_compile_specs_name_every_argument(arch):
    """compile_specs: one entry per launched variant, each giving every kernel argument a type or a value."""
    specs = attention.compile_specs(arch)
    assert len({spec["variant"] for spec in specs}) == len(specs)
    for spec in specs:
        assert set(spec["signature"]) | set(spec["constexprs"]) == set(spec["fn"].arg_names), spec["variant"]
        assert spec["arch"] == arch and spec["head_dim"] in (64, 72)


# cuobjdump -sass shapes: a setup block, a wait loop (no MMA), an MMA loop with a nested wait, an exit.
SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;                  /* 0x00000a0000017a02 */
        /*0010*/                   SYNCS.PHASECHK.TRANS64 P0, [UR4], R2 ;  /* 0x0000000000007947 */
        /*0020*/              @!P0 BRA 0x10 ;                              /* 0x0000000000007947 */
        /*0030*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR8], R24 ;   /* 0x0000000000007947 */
        /*0040*/                   FMUL R3, R3, R4 ;                       /* 0x0000000000007947 */
        /*0050*/                   SYNCS.PHASECHK.TRANS64 P1, [UR4], R2 ;  /* 0x0000000000007947 */
        /*0060*/              @!P1 BRA 0x50 ;                              /* 0x0000000000007947 */
        /*0070*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ;   /* 0x0000000000007947 */
        /*0080*/              @!P2 BRA 0x30 ;                              /* 0x0000000000007947 */
        /*0090*/                   EXIT ;                                  /* 0x0000000000007947 */
        /*00a0*/                   BRA 0xa0;                               /* 0x0000000000007947 */
"""


def test_main_loop_is_the_loop_with_the_mma_work():
    assert _sass.main_loop_instructions(SASS) == 6  # 0x30..0x80, not the wait loops nor the final self-branch


def test_main_loop_without_mma_is_the_longest_loop_and_none_without_a_loop():
    no_mma = SASS.replace("HGMMA.64x128x16.F32.BF16", "FFMA")
    assert _sass.main_loop_instructions(no_mma) == 6
    straight = "\n".join(line for line in SASS.splitlines() if "BRA" not in line)
    assert _sass.main_loop_instructions(straight) == 0


@pytest.mark.parametrize("regs,warps,smem,arch,ctas", [
    (168, 12, 99 * 1024, "sm_90a", 1),  # registers: 168 * 32 * 12 = 64.5 K > half the file
    (32, 4, 0, "sm_90a", 16),  # resident warps: 64 / 4
    (32, 1, 0, "sm_90a", 32),  # the CTA limit
    (64, 4, 40 * 1024, "sm_90a", 5),  # shared memory: 228 KB / (40 + 1) KB
    (64, 4, 40 * 1024, "sm_120", 2),  # 100 KB / 41 KB
    (33, 8, 0, "sm_90a", 6),  # 33 registers allocate as 40: 65536 / (40 * 32 * 8)
    (128, 4, 100 * 1024, "sm_120", 0),  # over sm_120's 99 KB per CTA: does not launch
    (128, 4, 48 * 1024, "sm_120", 2),
])
def test_occupancy(regs, warps, smem, arch, ctas):
    assert _sass.occupancy(regs, warps, smem, arch) == ctas


def test_mma_operands():
    ptx = ("wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {...}; "
           "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {...}; tcgen05.mma.cta_group::1.kind::f8f6f4 [x]; "
           "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {...}; "
           "mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32 {...};")
    assert _sass.mma_operands(ptx) == "mma.sync.bf16+mma.sync.s8+tcgen05.f8f6f4+wgmma.e4m3+wgmma.s8"
    assert _sass.mma_operands("ex2.approx.f32") == ""


def test_int_arguments_specialize_as_the_launcher():
    signature, constexprs, divisible = _sass.int_arguments(M=300, N=4096, stride=1, zero=0)
    assert signature == {"M": "i32", "N": "i32", "zero": "i32"} and constexprs == {"stride": 1}
    assert divisible == ("N", "zero")


def test_merged_joins_the_shapes_of_one_compile():
    spec = dict(fn=attention._attention_kernel, signature={"a": "i32"}, constexprs={"B": 1}, arch="sm_90a",
                num_warps=4, num_stages=2, divisible=(), variant="x")
    specs = _sass.merged([{**spec, "shapes": "v1 2048²"}, {**spec, "shapes": "v1 4096²"},
                          {**spec, "divisible": ("a",), "shapes": "v1.5 2048²"}])
    assert [s["shapes"] for s in specs] == ["v1 2048², v1 4096²", "v1.5 2048²"]
