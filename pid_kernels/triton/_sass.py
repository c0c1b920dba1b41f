"""Static facts about a Triton kernel compiled ahead of time for a GPU that is not here.

Every Triton op module has `compile_specs(arch) -> list[dict]`: one dict per kernel variant its
launcher launches at PiD's real shapes (`pid_shapes`), holding `compile_for`'s keyword arguments
plus the SPEC_INFO keys (`variant`; where they apply `head_dim`, `mma_useful_fraction` (the mark of
a tensor-core kernel), `shapes`, the claims `ctas_per_sm` (occupancy, 1 if absent),
`mma_operands` (e.g. "e4m3": the tensor cores must read that type, see `mma_operands`) and
`softmax_overlap` (one of OVERLAP_KINDS or "none")).
`compile_spec(spec)` compiles one. `compile_for(fn, signature, constexprs, arch, num_warps,
num_stages)` compiles for sm_90a, sm_100a or sm_120 with the installed Triton (no GPU needed);
`kernel_facts(compiled, arch)` reads the compiled kernel: registers, spills and shared memory
(cuobjdump -res-usage, the binaries Triton ships), warps as launched (warp specialization adds
partitions), CTAs per SM (`occupancy`), the MMA path, TMA use, the SASS instructions of the main
loop (`main_loop_instructions`) and whether the softmax can overlap MMA work (`softmax_overlap`,
from the PTX and the SASS):
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
from dataclasses import dataclass

from pid_kernels.runtime import triton

# Per SM (CUDA programming guide, compute capabilities 9.0 / 10.0 / 12.0): shared memory of the SM and
# the most one CTA may take (the driver reserves 1 KB more per CTA), resident warps. All three: 64 K
# 32-bit registers, allocated per warp in units of 256; at most 32 resident CTAs.
ARCH_LIMITS = {
    "sm_90a": {"capability": 90, "smem_sm": 228 * 1024, "smem": 227 * 1024, "warps": 64},
    "sm_100a": {"capability": 100, "smem_sm": 228 * 1024, "smem": 227 * 1024, "warps": 64},
    "sm_120": {"capability": 120, "smem_sm": 100 * 1024, "smem": 99 * 1024, "warps": 48},
}
REGISTERS_PER_SM = 65536
REGISTER_UNIT = 256
SMEM_RESERVED_PER_CTA = 1024
MAX_CTAS_PER_SM = 32
OVERLAP_KINDS = ("wait_pending", "mma_partition", "consumer_warpgroups")
SPEC_INFO = ("variant", "shapes", "head_dim", "mma_useful_fraction", "ctas_per_sm", "mma_operands", "softmax_overlap")
# SASS opcodes that issue tensor-core work: HGMMA (wgmma), UTC*MMA (tcgen05), HMMA/IMMA/QMMA (mma.sync).
_MMA_OPCODE = re.compile(r"^(?:@!?U?P\w+\s+)?(?:HGMMA|UTC\w*MMA|HMMA|IMMA|QMMA|OMMA)\b")


@dataclass(frozen=True)
class PidShape:
    """One real decode: a released config at one output size."""

    label: str  # e.g. "v1 2048²"
    config: dict
    image_hw: tuple[int, int]

    @property
    def patch_tokens(self) -> int:
        """Li: patches of the image (the MM-DiT image stream and the PiT attention's tokens)."""
        from pid.sampling.geometry import geometry_from_config

        height, width = geometry_from_config(self.config).check_image_hw(self.image_hw)
        patch = self.config["patch_size"]
        return (height // patch) * (width // patch)


def pid_shapes() -> list[PidShape]:
    """v1 and v1.5 (the released Flux decoders) at the device benchmark's 2048² and 4096²."""
    from pid.bench.ops import SIZES, V15_CHECKPOINT
    from pid.configs import DEFAULT_CHECKPOINT, released_config

    versions = {"v1": DEFAULT_CHECKPOINT, "v1.5": V15_CHECKPOINT}
    return [PidShape(f"{version} {size}²", released_config(name), SIZES[size])
            for version, name in versions.items() for size in ("2048", "4096")]


def merged(specs: list[dict]) -> list[dict]:
    """Specs that compile the same kernel merged into one, their `shapes` joined ("v1 2048², v1 4096²")."""
    by_key = {}
    for spec in specs:
        key = (spec["fn"].__name__, repr(sorted(spec["constexprs"].items())), repr(sorted(spec["signature"].items())),
               spec["num_warps"], spec["num_stages"], tuple(spec.get("divisible", ())))
        if key in by_key:
            by_key[key]["shapes"] += ", " + spec["shapes"]
        else:
            by_key[key] = dict(spec)
    return list(by_key.values())


def compile_spec(spec: dict):
    """compile_for of one compile_specs entry."""
    return compile_for(**{key: value for key, value in spec.items() if key not in SPEC_INFO})


def tuning_arch(arch: str) -> str:
    """The tuning table of a compile target: "sm_90a" -> "sm90"."""
    return arch.rstrip("a").replace("_", "")


def int_arguments(**values: int) -> tuple[dict, dict, tuple]:
    """(signature, constexprs, divisible) of integer kernel arguments as Triton's launcher specializes
    their values: 1 becomes a constant, multiples of 16 are marked divisible by 16, the rest plain i32."""
    signature = {name: "i32" for name, value in values.items() if value != 1}
    return signature, {name: 1 for name, value in values.items() if value == 1}, tuple(
        name for name in signature if values[name] % 16 == 0)


def compile_for(fn, signature: dict, constexprs: dict, arch: str, num_warps: int, num_stages: int,
                divisible: tuple = ()):
    """triton.compile of a @triton.jit function for `arch` (a key of ARCH_LIMITS), without a GPU.

    Pointer arguments are taken as 16-byte aligned, as the launcher specializes torch's allocations,
    and so are the integer arguments named in `divisible` (multiples of 16)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if arch not in ARCH_LIMITS:
        raise ValueError(f"arch {arch!r} is not one of {sorted(ARCH_LIMITS)}")
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    order = [name for name in fn.arg_names if name in signature]
    aligned = {(order.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items()
               if kind[0] == "*" or name in divisible}
    source = ASTSource(fn, signature, constexprs=constexprs, attrs=aligned)
    target = GPUTarget("cuda", ARCH_LIMITS[arch]["capability"], 32)
    return triton.compile(source, target=target, options={"num_warps": num_warps, "num_stages": num_stages})


def _cuobjdump(cubin: bytes, *flags: str) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([tool, *flags, file.name], capture_output=True, text=True, check=True).stdout


def _resource_usage(dump: str) -> dict:
    """regs and spills (stack + local bytes) from `cuobjdump -res-usage` text."""
    fields = dict(re.findall(r"(REG|STACK|LOCAL):(\d+)", dump))
    return {"regs": int(fields["REG"]), "spills": int(fields["STACK"]) + int(fields["LOCAL"])}


def occupancy(regs: int, warps: int, smem_bytes: int, arch: str) -> int:
    """Resident CTAs per SM of a kernel (0: its shared memory does not fit one CTA)."""
    limits = ARCH_LIMITS[arch]
    if smem_bytes > limits["smem"]:
        return 0
    regs_per_warp = -(-regs * 32 // REGISTER_UNIT) * REGISTER_UNIT
    by_regs = REGISTERS_PER_SM // (regs_per_warp * warps)
    by_smem = limits["smem_sm"] // (smem_bytes + SMEM_RESERVED_PER_CTA)
    return min(by_regs, by_smem, limits["warps"] // warps, MAX_CTAS_PER_SM)


def main_loop_instructions(sass: str) -> int:
    """SASS instructions of the main loop of `cuobjdump -sass` text: of the loops (a branch back to a
    lower address; all back-edges to one target make one loop), the innermost one holding the most
    tensor-core instructions; without any, the longest loop. 0 if the kernel has no loop."""
    code = [(int(address, 16), text.strip()) for address, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    ends = {}
    for address, text in code:
        branch = re.search(r"\bBRA(?:\.\w+)*\s+(?:\S+,\s*)?(?:`\(\.L_x_)?0x([0-9a-f]+)", text)
        if branch and int(branch.group(1), 16) < address:
            start = int(branch.group(1), 16)
            ends[start] = max(ends.get(start, 0), address)
    loops = []
    for start, end in ends.items():
        body = [text for address, text in code if start <= address <= end]
        mma = sum(bool(_MMA_OPCODE.match(text)) for text in body)
        loops.append((mma, -len(body) if mma else len(body), len(body)))
    return max(loops)[2] if loops else 0


def mma_path(ptx: str) -> str:
    if "tcgen05.mma" in ptx:
        return "tcgen05"
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    return "mma.sync" if re.search(r"\bmma\.sync", ptx) else "none"


def mma_operands(ptx: str) -> str:
    """The tensor-core instructions of the PTX as "<path>.<operand type>", "+"-joined: wgmma / mma.sync
    A types ("wgmma.bf16", "mma.sync.s8"), tcgen05 kinds ("tcgen05.f16" covers bf16, "tcgen05.f8f6f4")."""
    kinds = {f"wgmma.{kind}" for kind in re.findall(r"wgmma\.mma_async\.sync\.aligned\.m\d+n\d+k\d+\.\w+\.(\w+)\.", ptx)}
    kinds |= {f"tcgen05.{kind}" for kind in re.findall(r"tcgen05\.mma\.cta_group::\d\.kind::(\w+)", ptx)}
    kinds |= {f"mma.sync.{kind}" for kind in
              re.findall(r"\bmma\.sync\.aligned\.m\d+n\d+k\d+\.row\.col(?:\.satfinite)?\.\w+\.(\w+)\.", ptx)}
    return "+".join(sorted(kinds))


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
    """regs, spills (bytes), smem_bytes, warps (as launched), ctas_per_sm, mma, mma_operands, tma,
    warp_specialized, softmax_overlap, main_loop_sass of a kernel from compile_for."""
    ptx = compiled.asm["ptx"]
    dump = _cuobjdump(compiled.asm["cubin"], "-res-usage", "-sass")
    facts = _resource_usage(dump)
    warps = compiled.metadata.num_warps
    smem = compiled.metadata.shared
    facts.update(
        smem_bytes=smem,
        warps=warps,
        ctas_per_sm=occupancy(facts["regs"], warps, smem, arch),
        main_loop_sass=main_loop_instructions(dump),
        mma=mma_path(ptx),
        mma_operands=mma_operands(ptx),
        tma="cp.async.bulk.tensor" in ptx,
        warp_specialized="setmaxnreg" in ptx,
        softmax_overlap=softmax_overlap(ptx, dump),
    )
    return facts
