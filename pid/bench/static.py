"""Static kernel report: every kernel compiled ahead of time for GPUs that are not here, no GPU needed.

    python -m pid.bench.static [--arch sm_90a,sm_100a,sm_120] [--out benchmarks/static] [--no-cuda]

Triton: each op module's `compile_specs(arch)` (pid_kernels/triton/<op>.py, pid/quant/triton_*.py) gives
the variants its launcher launches at PiD's real shapes (pid_kernels.triton._sass.pid_shapes), compiled
with the Triton this runs under; `_sass.kernel_facts` reads each cubin and PTX. CUDA C++: every csrc/*.cu
through `nvcc -cubin -Xptxas -v` (nvcc of CUDA_HOME, else the PATH's) for the same targets (the 'a'
variant, as the build: sm_120 compiles as sm_120a). Writes DIR/<triton version>-<arch>.csv and
DIR/nvcc-<version>-<arch>.csv, one row per kernel variant, and the Markdown summary of every CSV in DIR
(default benchmarks/STATIC.md). These are compile facts, not timings.

Gate (non-zero exit, one line per failure): a kernel that does not compile; any spill on sm_90a or
sm_100a; a tensor-core kernel (its spec has mma_useful_fraction) without wgmma on sm_90a or tcgen05 on
sm_100a, or without the operand type its spec claims (mma_operands); fewer CTAs per SM than its spec
claims (ctas_per_sm, 1 if absent: 0 means its shared memory does not fit); a softmax/MMA overlap other
than the one its spec claims (softmax_overlap, the attention's tuning table). ALLOWED lists the exceptions.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import importlib
import multiprocessing
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHES = ("sm_90a", "sm_100a", "sm_120")
COLUMNS = ("kernel", "variant", "arch", "triton", "regs", "spills", "smem_bytes", "num_warps", "num_stages",
           "ctas_per_sm", "mma", "tma", "head_dim", "softmax_overlap", "mma_useful_fraction", "main_loop_sass",
           "mma_operands", "warp_specialized", "claimed_ctas_per_sm", "claimed_overlap", "module", "shapes", "gate")
GATED_ARCHES = {"sm_90a": "wgmma", "sm_100a": "tcgen05"}
# Tensor-core operand kinds (_sass.mma_operands) that satisfy a spec's mma_operands claim.
OPERAND_KINDS = {"e4m3": ("e4m3", "f8f6f4")}
# (kernel, variant, arch, rule) -> why it stays: known-bad facts this report does not fail on.
_FP32_POINTER = ("float32's three-pass tf32 pointer kernel (--dtype fp32 only; bf16 takes the pipelined kernel): "
                 "FLOAT32_TILE_CAPS' 4 warps hold the split tf32 operands (d72 padded to 128) in 255 registers; "
                 "8 warps or smaller tiles are a tuning change of attention.py, not made here")
_FP32_PREPARE = ("float32 key pre-pass at d72 (--dtype fp32 only): 64 rows of k, pair partners, cos and sin padded "
                 "to 128 channels in float32 over Triton's default 4 warps (the launch sets none); a num_warps for "
                 "it is a launcher change of attention.py, not made here")
ALLOWED: dict[tuple[str, str, str, str], str] = {
    ("_prepare_qkv_kernel", "d72 fp32 k", "sm_90a", "spills"): _FP32_PREPARE,
    ("_prepare_qkv_kernel", "d72 fp32 k", "sm_100a", "spills"): _FP32_PREPARE,
    ("_attention_kernel", "d72 fp32", "sm_90a", "spills"): _FP32_POINTER,
    ("_attention_kernel", "d72 fp32", "sm_100a", "spills"): _FP32_POINTER,
    ("_attention_kernel", "d64 fp32 masked", "sm_100a", "spills"): _FP32_POINTER,
}


def _own_kernels(module) -> list[str]:
    """The @triton.jit functions `module` defines itself (compiled or, under TRITON_INTERPRET, interpreted)."""
    return [name for name, value in vars(module).items()
            if hasattr(value, "arg_names") and getattr(getattr(value, "fn", None), "__module__", None) == module.__name__]


def triton_modules() -> list[str]:
    """Every module that defines Triton kernels: pid_kernels/triton/<op>.py and pid/quant/triton_*.py (an op
    module that only registers kernels another module defines, as the *_fp8 ops do, has none of its own)."""
    ops = [f"pid_kernels.triton.{info.name}" for info in pkgutil.iter_modules([str(ROOT / "pid_kernels" / "triton")])
           if not info.name.startswith("_")]
    candidates = ops + [f"pid.quant.{path.stem}" for path in sorted((ROOT / "pid" / "quant").glob("triton_*.py"))]
    return [name for name in candidates if _own_kernels(importlib.import_module(name))]


def _yes(value) -> str:
    return "yes" if value else "no"


def _compile_triton(job: tuple[str, str, int]) -> dict:
    """One row: compile_specs(arch)[index] of a module, compiled and read (error: why it did not compile)."""
    import triton

    from pid_kernels.triton import _sass

    module, arch, index = job
    spec = importlib.import_module(module).compile_specs(arch)[index]
    row = dict(kernel=spec["fn"].__name__, variant=spec["variant"], arch=arch, triton=triton.__version__,
               num_stages=spec["num_stages"], head_dim=spec.get("head_dim", ""), module=module,
               mma_useful_fraction=round(spec["mma_useful_fraction"], 3) if "mma_useful_fraction" in spec else "",
               claimed_ctas_per_sm=spec.get("ctas_per_sm", 1), shapes=spec.get("shapes", ""),
               claimed_operands=spec.get("mma_operands", ""), claimed_overlap=spec.get("softmax_overlap", ""))
    try:
        facts = _sass.kernel_facts(_sass.compile_spec(spec), arch)
    except Exception as error:  # noqa: BLE001 (any compiler error is a finding, reported by the gate)
        return {**row, "error": " ".join(str(error).split())[:300] or type(error).__name__}
    attention = "mma_useful_fraction" in spec and "head_dim" in spec
    row.update(regs=facts["regs"], spills=facts["spills"], smem_bytes=facts["smem_bytes"], num_warps=facts["warps"],
               ctas_per_sm=facts["ctas_per_sm"], mma=facts["mma"], tma=_yes(facts["tma"]),
               softmax_overlap=facts["softmax_overlap"] if attention else "", main_loop_sass=facts["main_loop_sass"],
               mma_operands=facts["mma_operands"], warp_specialized=_yes(facts["warp_specialized"]))
    return row


def nvcc_path() -> str:
    home = os.environ.get("CUDA_HOME")
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        raise SystemExit("nvcc not found: set CUDA_HOME to the CUDA toolkit (e.g. /usr/local/cuda-13.0)")
    return nvcc


def parse_ptxas(text: str) -> list[dict]:
    """Per kernel and target of `nvcc -Xptxas -v` output: {name (mangled), target ("sm_90a"), regs,
    spills (spill store + load bytes), smem_bytes}."""
    kernels, current = [], None
    for line in text.splitlines():
        entry = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
        if entry:
            current = {"name": entry.group(1), "target": entry.group(2), "regs": 0, "spills": 0, "smem_bytes": 0}
            kernels.append(current)
        elif current is not None:
            spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if spill:
                current["spills"] = int(spill.group(1)) + int(spill.group(2))
            used = re.search(r"Used (\d+) registers", line)
            if used:
                current["regs"] = int(used.group(1))
                smem = re.search(r"(\d+) bytes smem", line)
                current["smem_bytes"] = int(smem.group(1)) if smem else 0
    return kernels


def _nvcc_target(arch: str) -> str:
    return arch if arch.endswith("a") else arch + "a"


def _compile_cuda(job: tuple[str, tuple[str, ...]]) -> list[dict]:
    """Rows of every kernel of one csrc/*.cu compiled for each arch in one nvcc call (one row per arch
    with the error if it does not compile)."""
    source, arches = job
    nvcc = nvcc_path()
    targets = {_nvcc_target(arch): arch for arch in arches}
    gencode = [f"-gencode=arch=compute_{t[3:]},code={t}" for t in targets]
    run = subprocess.run([nvcc, "-std=c++17", "-O3", *gencode, "-Xptxas", "-v", "-c", source, "-o", os.devnull],
                         capture_output=True, text=True)
    base = dict(kernel=Path(source).stem, variant="", triton="", module=f"csrc/{Path(source).name}")
    if run.returncode != 0:
        return [{**base, "arch": arch, "error": " ".join(run.stderr.split())[-300:]} for arch in arches]
    kernels = parse_ptxas(run.stdout + run.stderr)
    mangled = "\n".join(kernel["name"] for kernel in kernels)
    demangler = shutil.which("cu++filt", path=os.path.dirname(nvcc)) or shutil.which("c++filt")
    names = (subprocess.run([demangler], input=mangled, capture_output=True, text=True).stdout if demangler
             else mangled).splitlines()
    rows = []
    for kernel, name in zip(kernels, names):
        head = name.removeprefix("void ")
        head = head[:head.rindex("(")] if "(" in head else head
        kernel_name, _, template = head.partition("<")
        rows.append({**base, "kernel": kernel_name.split("::")[-1], "variant": template.removesuffix(">"),
                     "arch": targets[kernel["target"]], "regs": kernel["regs"], "spills": kernel["spills"],
                     "smem_bytes": kernel["smem_bytes"]})
    return rows


def nvcc_version() -> str:
    text = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout
    return re.search(r"release (\d+\.\d+)", text).group(1)


def failures(row: dict) -> list[tuple[str, str]]:
    """(rule, why) of every gate rule the row breaks (see the module docstring)."""
    if row.get("error"):
        return [("compile", f"does not compile: {row['error']}")]
    found = []
    arch = row["arch"]
    if arch in GATED_ARCHES and int(row["spills"]) > 0:
        found.append(("spills", f"{row['spills']} bytes spilled"))
    wanted = GATED_ARCHES.get(arch)
    if wanted and row.get("mma_useful_fraction", "") != "" and row["mma"] != wanted:
        found.append(("mma", f"a tensor-core kernel on {row['mma']}, not {wanted}"))
    claim = row.get("claimed_operands", "")
    expected = {f"{wanted}.{kind}" for kind in OPERAND_KINDS.get(claim, (claim,))}
    if wanted and claim and not expected & set(row["mma_operands"].split("+")):
        found.append(("mma_operands", f"tensor cores run {row['mma_operands'] or 'nothing'}, no {claim} on {wanted}"))
    if row.get("claimed_ctas_per_sm", "") != "" and int(row["ctas_per_sm"]) < int(row["claimed_ctas_per_sm"]):
        found.append(("occupancy", f"{row['ctas_per_sm']} CTAs per SM, the op claims {row['claimed_ctas_per_sm']}"))
    overlap = row.get("claimed_overlap", "")
    if overlap and row["softmax_overlap"] != overlap:
        found.append(("overlap", f"softmax overlap {row['softmax_overlap']}, the tuning table claims {overlap}"))
    return found


def gate(rows: list[dict], allowed: dict = ALLOWED) -> list[str]:
    """Sets each row's `gate` column; the failure lines the allow-list does not excuse."""
    lines = []
    for row in rows:
        verdicts = []
        for rule, why in failures(row):
            reason = allowed.get((row["kernel"], row["variant"], row["arch"], rule))
            verdicts.append(f"allowed: {why}" if reason else f"FAIL: {why}")
            if not reason:
                compiler = f"triton {row['triton']}" if row["triton"] else "nvcc"
                lines.append(f"{row['kernel']}/{row['variant'] or '-'}/{row['arch']} ({compiler}): {why}")
        row["gate"] = "; ".join(verdicts) or "ok"
    return lines


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


MD_COLUMNS = (("kernel", "kernel"), ("variant", "variant"), ("regs", "regs"), ("spills", "spills"),
              ("smem_bytes", "smem B"), ("num_warps", "warps"), ("num_stages", "stages"), ("ctas_per_sm", "CTAs/SM"),
              ("mma", "MMA"), ("mma_operands", "operands"), ("tma", "TMA"), ("softmax_overlap", "softmax overlap"),
              ("mma_useful_fraction", "useful MMA"), ("main_loop_sass", "main loop SASS"), ("gate", "gate"))


def markdown(folder: Path) -> str:
    """benchmarks/STATIC.md: every CSV of `folder` as one table."""
    arch_order = {arch: index for index, arch in enumerate(ARCHES)}
    tables = sorted(folder.glob("*.csv"), key=lambda path: (path.stem.startswith("nvcc"), path.stem.rsplit("-", 1)[0],
                                                            arch_order.get(path.stem.rsplit("-", 1)[1], 9)))
    tritons = sorted({path.stem.rsplit("-", 1)[0] for path in tables if not path.stem.startswith("nvcc")})
    lines = ["# Static kernel report", "",
             "Generated by `python -m pid.bench.static` (`bash scripts/static_report.sh`) from "
             f"`{folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}/*.csv`; do not edit by hand.",
             "", f"Compile facts, not timings: every kernel compiled ahead of time on a machine without a GPU, "
             f"for GPUs that were not there, with Triton {', '.join(tritons) or '(none)'} and nvcc "
             "(CUDA C++ kernels). Registers and spills from the cubin, CTAs per SM from the registers, shared "
             "memory and warps as launched, MMA path and TMA from the PTX, the main loop's SASS instruction "
             "count from the disassembly (pid_kernels/triton/_sass.py). Nothing here was run.", ""]
    for path in tables:
        with path.open() as file:
            rows = list(csv.DictReader(file))
        compiler, arch = path.stem.rsplit("-", 1)
        title = f"nvcc {compiler.removeprefix('nvcc-')}" if compiler.startswith("nvcc") else f"Triton {compiler}"
        lines += [f"## {title}, {arch}", "", "| " + " | ".join(label for _, label in MD_COLUMNS) + " |",
                  "|" + "---|" * len(MD_COLUMNS)]
        lines += ["| " + " | ".join(row.get(key, "") for key, _ in MD_COLUMNS) + " |" for row in rows]
        lines.append("")
    lines += ["## Allowed (pid/bench/static.py ALLOWED)", ""]
    lines += [f"- {kernel} {variant} {arch}, {rule}: {reason}" for (kernel, variant, arch, rule), reason in ALLOWED.items()]
    return "\n".join(lines + [""])


def _progress(result) -> str:
    """One line for one finished job: a Triton variant, or a CUDA source's kernels."""
    if isinstance(result, list):
        spilled = sum(int(row.get("spills") or 0) for row in result)
        broken = any(row.get("error") for row in result)
        return (f"{result[0]['module']}: {'does not compile' if broken else f'{len(result)} kernel variants'}, "
                f"most {max(int(row.get('regs') or 0) for row in result)} regs, {spilled} B spilled")
    if result.get("error"):
        return f"{result['arch']} {result['kernel']} {result['variant']}: does not compile"
    return (f"{result['arch']} {result['kernel']} {result['variant']}: {result['regs']} regs, {result['spills']} B "
            f"spilled, {result['smem_bytes']} B smem, {result['mma']}, {result['ctas_per_sm']} CTA/SM")


def run(arches: list[str], out: Path, md: Path, cuda: bool, jobs: int) -> int:
    import triton

    # The CUDA sources first: one long nvcc call each, overlapping the many short Triton compiles.
    work = [(_compile_cuda, (str(source), tuple(arches))) for source in sorted((ROOT / "csrc").glob("*.cu")) if cuda]
    for module in triton_modules():
        imported = importlib.import_module(module)
        if not hasattr(imported, "compile_specs"):
            print(f"{module}: FAIL: no compile_specs", file=sys.stderr)
            return 1
        work += [(_compile_triton, (module, arch, index))
                 for arch in arches for index in range(len(imported.compile_specs(arch)))]
    rows = []
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        started = time.monotonic()
        futures = {pool.submit(function, job): job for function, job in work}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            for row in result if isinstance(result, list) else [result]:
                rows.append(row)
            print(f"[{done}/{len(work)} {time.monotonic() - started:4.0f} s] {_progress(result)}", file=sys.stderr,
                  flush=True)
    order = {module: index for index, module in enumerate(triton_modules())}
    rows.sort(key=lambda row: (order.get(row["module"], len(order)), row["module"], row["kernel"], row["variant"]))
    lines = gate(rows)
    out.mkdir(parents=True, exist_ok=True)
    files = {f"{triton.__version__}-{arch}.csv": [r for r in rows if r["triton"] and r["arch"] == arch] for arch in arches}
    if cuda:
        version = nvcc_version()
        files.update({f"nvcc-{version}-{arch}.csv": [r for r in rows if not r["triton"] and r["arch"] == arch]
                      for arch in arches})
    for name, file_rows in files.items():
        write_csv(out / name, file_rows)
    md.write_text(markdown(out))
    for line in lines:
        print(f"FAIL {line}", file=sys.stderr)
    print(f"{len(rows)} kernel variants, {len(lines)} failures; wrote {', '.join(files)} and {md}", file=sys.stderr)
    return 1 if lines else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pid.bench.static", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=",".join(ARCHES), help="comma-separated targets (default: all three)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "static", help="folder of the CSVs")
    parser.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "STATIC.md",
                        help="the summary written from every CSV in --out")
    parser.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=True,
                        help="also compile csrc/*.cu with nvcc (default: yes)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile processes")
    args = parser.parse_args(argv)
    arches = [arch.strip() for arch in args.arch.split(",") if arch.strip()]
    unknown = sorted(set(arches) - set(ARCHES))
    if unknown or not arches:
        parser.error(f"--arch {args.arch!r}: each target must be one of {', '.join(ARCHES)}")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be at least 1")
    # The report compiles real kernels: under the interpreter @triton.jit gives interpreted functions.
    os.environ.pop("TRITON_INTERPRET", None)
    return run(arches, args.out.resolve(), args.markdown.resolve(), args.cuda, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
