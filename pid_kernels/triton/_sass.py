"""Static facts about a Triton kernel compiled ahead of time for a GPU that is not here.

`compile_for(fn, signature, constexprs, arch, num_warps, num_stages)` compiles for sm_90a, sm_100a
or sm_120 with the installed Triton (no GPU needed); `kernel_facts(compiled, arch)` reads the
compiled kernel: registers, spills and shared memory (cuobjdump -res-usage, the binaries Triton
ships), warps as launched (warp specialization adds partitions), the MMA path, TMA use, and whether
the softmax can overlap MMA work (`softmax_overlap`, from the PTX and the SASS):
  * "wait_pending": one warpgroup's softmax runs under its own MMA (FA3's schedule): a wgmma wait
    leaves groups in flight (PTX wait_group N > 0) before exp2 work, or, in the SASS, MUFU.EX2 issues
    between an HGMMA and the WARPGROUP.DEPBAR that retires it (ptxas sinks a PTX wait 0 below exp2
    work that does not depend on the MMA, which is how Triton's code gets there);
  * "mma_partition": a warp-specialized partition issues the MMA and holds no exp2, another runs the
    softmax (Triton's Blackwell warp specialization: tcgen05 from its own warp);
  * "consumer_warpgroups": two or more partitions each issue MMA and run a softmax on their own rows
    (Triton's Hopper autoWS data partitioning): one's softmax can run under the other's MMA, but each
    waits for its own wgmma to finish (pending 0) and nothing orders them into a ping-pong;
  * "none".
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from pid_kernels.runtime import triton

# Per SM: 64 K 32-bit registers on all three; shared memory per SM usable by CTAs; resident warps.
ARCH_LIMITS = {
    "sm_90a": {"capability": 90, "smem": 227 * 1024, "warps": 64},
    "sm_100a": {"capability": 100, "smem": 227 * 1024, "warps": 64},
    "sm_120": {"capability": 120, "smem": 99 * 1024, "warps": 48},
}
REGISTERS_PER_SM = 65536
OVERLAP_KINDS = ("wait_pending", "mma_partition", "consumer_warpgroups")


def compile_for(fn, signature: dict, constexprs: dict, arch: str, num_warps: int, num_stages: int):
    """triton.compile of a @triton.jit function for `arch` (a key of ARCH_LIMITS), without a GPU.

    Pointer arguments are taken as 16-byte aligned, as the launcher specializes torch's allocations."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if arch not in ARCH_LIMITS:
        raise ValueError(f"arch {arch!r} is not one of {sorted(ARCH_LIMITS)}")
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    order = [name for name in fn.arg_names if name in signature]
    aligned = {(order.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items() if kind[0] == "*"}
    source = ASTSource(fn, signature, constexprs=constexprs, attrs=aligned)
    target = GPUTarget("cuda", ARCH_LIMITS[arch]["capability"], 32)
    return triton.compile(source, target=target, options={"num_warps": num_warps, "num_stages": num_stages})


def _cuobjdump(cubin: bytes, flag: str) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([tool, flag, file.name], capture_output=True, text=True, check=True).stdout


def _resource_usage(cubin: bytes) -> dict:
    fields = dict(re.findall(r"(REG|STACK|LOCAL):(\d+)", _cuobjdump(cubin, "-res-usage")))
    return {"regs": int(fields["REG"]), "spills": int(fields["STACK"]) + int(fields["LOCAL"])}


def mma_path(ptx: str) -> str:
    if "tcgen05.mma" in ptx:
        return "tcgen05"
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    return "mma.sync" if re.search(r"\bmma\.sync", ptx) else "none"


def _partitions(ptx: str) -> list[str]:
    """The PTX between register reallocations: one piece per warp-specialized partition (one if none)."""
    return re.split(r"setmaxnreg\.\w+\.sync\.aligned\.u32", ptx)


def _waits_pending_over_exp2(ptx: str) -> bool:
    events = re.findall(r"wgmma\.wait_group\.sync\.aligned\s+(\d+)|(ex2\.approx)", ptx)
    pending = 0
    for wait, exp2 in events:
        if wait:
            pending = int(wait)
        elif exp2 and pending > 0:
            return True
    return False


def _hgmma_in_flight_over_exp2(sass: str) -> bool:
    """SASS in program order: a MUFU.EX2 after an HGMMA and before a DEPBAR that waits for all groups."""
    in_flight = False
    for event in re.findall(r"\bHGMMA\b|WARPGROUP\.DEPBAR\.LE\s+gsb0\s*,\s*0x0\b|MUFU\.EX2", sass):
        if event == "HGMMA":
            in_flight = True
        elif event.startswith("WARPGROUP"):
            in_flight = False
        elif in_flight:
            return True
    return False


def softmax_overlap(ptx: str, sass: str = "") -> str:
    """One of OVERLAP_KINDS, or "none" (see the module docstring); sass: cuobjdump -sass of the cubin."""
    if _waits_pending_over_exp2(ptx) or _hgmma_in_flight_over_exp2(sass):
        return "wait_pending"
    pieces = _partitions(ptx)
    mma = [bool(re.search(r"tcgen05\.mma|wgmma\.mma_async", piece)) for piece in pieces]
    exp2 = ["ex2.approx" in piece for piece in pieces]
    if any(m and not e for m, e in zip(mma, exp2)) and any(e and not m for m, e in zip(mma, exp2)):
        return "mma_partition"
    if sum(m and e for m, e in zip(mma, exp2)) >= 2:
        return "consumer_warpgroups"
    return "none"


def kernel_facts(compiled, arch: str) -> dict:
    """regs, spills (bytes), smem_bytes, warps (as launched), ctas_per_sm, mma, tma, warp_specialized,
    softmax_overlap of a kernel from compile_for."""
    limits = ARCH_LIMITS[arch]
    ptx = compiled.asm["ptx"]
    facts = _resource_usage(compiled.asm["cubin"])
    warps = compiled.metadata.num_warps
    smem = compiled.metadata.shared
    # Registers are allocated per warp in units of 256 (8 per thread).
    regs_per_warp = -(-facts["regs"] * 32 // 256) * 256
    by_regs = REGISTERS_PER_SM // (regs_per_warp * warps)
    by_smem = limits["smem"] // smem if smem else by_regs
    facts.update(
        smem_bytes=smem,
        warps=warps,
        ctas_per_sm=min(by_regs, by_smem, limits["warps"] // warps),
        mma=mma_path(ptx),
        tma="cp.async.bulk.tensor" in ptx,
        warp_specialized="setmaxnreg" in ptx,
        softmax_overlap=softmax_overlap(ptx, _cuobjdump(compiled.asm["cubin"], "-sass")),
    )
    return facts
